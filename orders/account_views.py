"""The Accounts screen: a customer's balances and the day's activities (orders/activities.py), and, for
staff with orders.post_cash_movements, deposits, withdrawals and journals posted by hand through the
same checks as the API (orders/api/accounts.py)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from broker import access
from broker.exceptions import ApplicationError, ValidationFailed
from broker.models import Customer
from broker.screens import StaffRequest as HttpRequest
from broker.screens import screen
from orders import activities, roles, selectors
from orders.api.accounts import YEAR_MAX, cash_movement_parse, journal_parse
from orders.api.statements import month_parse
from orders.forms import customer_choices
from orders.statements import Month, activity_details, monthly_statement
from settlement.services import movement_post

DAY_LIMIT = activities.MAX_PAGE_SIZE


@screen(roles.VIEW_BLOTTER)
@require_http_methods(["GET", "POST"])
def accounts(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    customer_id = source.get("customer", "").strip()
    customer = Customer.objects.filter(customer_id=customer_id).first() if customer_id else None
    may_post = access.staff_may(user=request.user, permission=roles.POST_CASH_MOVEMENTS)
    if request.method == "POST" and not may_post:
        raise PermissionDenied(access.permission_message(roles.POST_CASH_MOVEMENTS))
    if request.method == "POST" and customer is not None:
        _post_movement(request, customer)
        return redirect(f"{request.path}?customer={customer.customer_id}")
    try:
        day = date.fromisoformat(request.GET.get("date", ""))
        if not 1970 <= day.year <= YEAR_MAX:
            raise ValueError(day)
    except ValueError:  # no day, or none the activities can be listed for: today
        day = timezone.localtime(timezone.now(), activities.MARKET_TZ).date()
    context: dict[str, Any] = {
        "customers": customer_choices()[1:],
        "customer": customer,
        "customer_id": customer_id,
        "day": day,
        "may_post": may_post,
        "others": [code for code, _ in customer_choices()[1:] if code != customer_id],
    }
    if customer is not None:
        query = activities.Query(customer_pk=customer.pk, day=day, page_size=DAY_LIMIT, below_horizon=False)
        rows = activities.activities_list(query)
        context.update(
            summary=selectors.customer_summary(customer=customer), rows=rows, truncated=len(rows) == DAY_LIMIT
        )
    return render(request, "orders/accounts.html", context)


@screen(roles.VIEW_BLOTTER)
@require_http_methods(["GET"])
def statements(request: HttpRequest) -> HttpResponse:
    """A customer's monthly statement as the API states it, with its PDF one click away."""
    customer_id = request.GET.get("customer", "").strip()
    customer = Customer.objects.filter(customer_id=customer_id).first() if customer_id else None
    today = timezone.localtime(timezone.now(), activities.MARKET_TZ).date()
    error = None
    try:
        month = month_parse(request.GET.get("month") or None)
    except ValidationFailed as problem:
        # No month yet is the last finished one; a bad one is said, and the current one shown.
        month = Month(first=today.replace(day=1))
        if request.GET.get("month"):
            error = problem.errors["month"][0]
        else:
            month = Month(first=(month.first - timedelta(days=1)).replace(day=1))
    context: dict[str, Any] = {
        "customers": customer_choices()[1:],
        "customer": customer,
        "customer_id": customer_id,
        "month": month,
        "error": error,
        "months": _recent_months(today),
    }
    if customer is not None:
        statement = monthly_statement(customer=customer, month=month)
        for row in statement["activities"]:
            row["details"] = activity_details(row)
        context["statement"] = statement
    return render(request, "orders/statements.html", context)


def _recent_months(today: date, count: int = 24) -> list[str]:
    first, months = today.replace(day=1), []
    for _ in range(count):
        months.append(f"{first:%Y-%m}")
        first = (first - timedelta(days=1)).replace(day=1)
    return months


def _post_movement(request: HttpRequest, customer: Customer) -> None:
    """Post what the form asks, or say what is wrong with it (the API's messages, field by field)."""
    data = {name: str(value).strip() for name, value in request.POST.items() if str(value).strip()}
    actor = request.user.get_username()
    try:
        if data.get("action") == "journal":
            body: dict[str, Any] = {
                key: data[key] for key in ("type", "toCustomerId", "amount", "symbol", "reason") if key in data
            }
            if re.fullmatch(r"[0-9]{1,10}", data.get("quantity", "")):
                body["quantity"] = int(data["quantity"])
            elif "quantity" in data:
                body["quantity"] = data["quantity"]
            movement = journal_parse({**body, "fromCustomerId": customer.customer_id}, actor=actor)
        else:
            body = {key: data[key] for key in ("type", "amount", "reason") if key in data}
            movement = cash_movement_parse(body, customer=customer, actor=actor)
        posted = movement_post(movement)
    except ApplicationError as error:
        problems = [f"{field}: {', '.join(texts)}" for field, texts in error.errors.items()] or [error.message]
        messages.error(request, "Not posted. " + " · ".join(problems))
        return
    amount = f"{movement.amount} {movement.asset}" if movement.asset != "USD" else f"{movement.amount} USD"
    messages.success(request, f"Posted: {posted.posting.get_purpose_display()} of {amount}.")
