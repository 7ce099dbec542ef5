"""A customer's account movements over the API: its activities (read by the customer and by staff with
the blotter), and the deposits, withdrawals and journals staff post by hand (orders.post_cash_movements)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import access
from broker.api.permissions import AUTHENTICATED_WITH_PERMISSION
from broker.exceptions import ValidationFailed
from broker.models import Customer, Ticker
from broker.text import Text
from orders import activities, roles
from orders.api.serializers import format_amount, format_time
from settlement.models import CASH_ASSET, Posting, PostingPurpose
from settlement.services import Movement, movement_post

REASON_TEXT = Text.of(Posting, "description")
REFERENCE_TEXT = Text.of(Posting, "reference")
CUSTOMER_TEXT = Text.of(Customer, "customer_id")
MAX_CASH = Decimal("1000000000000")  # a trillion: anything above is a typo, not a deposit
MAX_SHARES = 1_000_000_000
YEAR_MAX = 9998  # activity dates and ids: beyond it, a day's bounds would leave Python's datetime range


class CustomerActivitiesView(APIView):
    """Every movement of the customer's cash and shares, one typed entry each (orders/activities.py),
    ascending by `activityId`; a full page has `next`, the same query after its last id."""

    @extend_schema(
        parameters=[
            OpenApiParameter("type", str, description=f"Comma-separated: {', '.join(activities.TYPES)}."),
            OpenApiParameter("since_id", str, description="Only activities after this activityId."),
            OpenApiParameter("until_id", str, description="Only activities up to and including this activityId."),
            OpenApiParameter("date", OpenApiTypes.DATE, description="Only that day (New York)."),
            OpenApiParameter(
                "pageSize", int, description=f"1 to {activities.MAX_PAGE_SIZE} (default {activities.PAGE_SIZE})."
            ),
        ],
        responses=inline_serializer(
            "CustomerActivities",
            {
                "customerId": serializers.CharField(),
                "activities": serializers.ListField(child=serializers.DictField()),
                "next": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = access.customer_for_user(user=request.user, customer_id=customer_id, permission=roles.VIEW_BLOTTER)
        query = activities_query(request.query_params, customer_pk=customer.pk)
        rows = activities.activities_list(query)
        next_url = None
        if len(rows) == query.page_size:
            params = request.query_params.copy()
            params["since_id"] = rows[-1]["activityId"]
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"customerId": customer.customer_id, "activities": rows, "next": next_url})


def activities_query(params: Any, *, customer_pk: int) -> activities.Query:
    """The query string, checked: every bad parameter named (400)."""
    errors: dict[str, list[str]] = {}
    types = tuple(activities.TYPES)
    if (text := params.get("type")) is not None:
        asked = [name.strip().upper() for name in str(text).split(",") if name.strip()]
        unknown = [name for name in asked if name not in activities.TYPES]
        if unknown or not asked:
            shown = ", ".join(repr(name[:20]) for name in unknown[:3])
            errors["type"] = [f"Unknown activity type {shown}; one of {', '.join(activities.TYPES)}."]
        types = tuple(asked)
    bounds: dict[str, str | None] = {}
    for name in ("since_id", "until_id"):
        value = params.get(name)
        bounds[name] = value
        if value is not None:
            try:
                # A year the time arithmetic can go a day either side of (9999-12-31 would overflow).
                valid = (
                    activities.ACTIVITY_ID.match(value) is not None
                    and 1970 <= activities.activity_time(value).year <= YEAR_MAX
                )
            except ValueError:
                valid = False
            if not valid:
                errors[name] = [
                    "Must be an activityId as the API returns it (e.g. 20261204153000123456-01-000000000042)."
                ]
    day = None
    if (text := params.get("date")) is not None:
        try:
            day = date.fromisoformat(text)
            if not 1970 <= day.year <= YEAR_MAX:
                raise ValueError(text)
        except ValueError:
            errors["date"] = [f"Must be a date, YYYY-MM-DD, from 1970 to {YEAR_MAX}."]
    page_size = activities.PAGE_SIZE
    if (text := params.get("pageSize")) is not None:
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= activities.MAX_PAGE_SIZE:
            errors["pageSize"] = [f"Must be a whole number from 1 to {activities.MAX_PAGE_SIZE}."]
        else:
            page_size = int(text)
    if errors:
        raise ValidationFailed(errors)
    return activities.Query(
        customer_pk=customer_pk,
        types=types,
        since_id=bounds["since_id"],
        until_id=bounds["until_id"],
        day=day,
        page_size=page_size,
    )


MOVEMENT_TYPES: dict[str, str] = {PostingPurpose.CASH_DEPOSIT: "CSD", PostingPurpose.CASH_WITHDRAWAL: "CSW"}


def movement_output(posting: Posting) -> dict[str, Any]:
    entries = list(posting.entries.all())
    asset, amount = entries[0].asset, abs(entries[0].amount)
    kind = MOVEMENT_TYPES.get(posting.purpose) or ("JNLC" if asset == CASH_ASSET else "JNLS")
    out: dict[str, Any] = {
        "movementId": str(posting.posting_id),
        "type": kind,
        "customerId": posting.customer.customer_id if posting.customer else None,
        "counterpartyId": posting.counterparty.customer_id if posting.counterparty else None,
        "symbol": None if asset == CASH_ASSET else asset,
        "reason": posting.description,
        "postedBy": posting.actor,
        "reference": posting.reference or None,
        "createdAt": format_time(posting.created_at),
    }
    if asset == CASH_ASSET:
        out["amount"] = format_amount(amount)
    else:
        out["quantity"] = int(amount)
    return out


MOVEMENT_RESPONSES = {
    201: OpenApiResponse(description="Posted: the movement."),
    200: OpenApiResponse(description="This reference was posted before: the first movement, unchanged."),
    409: OpenApiResponse(description="Refused: it would leave the paying account negative."),
}


class CashMovementView(APIView):
    """Staff with orders.post_cash_movements: `{"type": "CSD" | "CSW", "amount": "250.00", "reason": "...",
    "reference": "..."}` deposits or withdraws cash. A withdrawal may take only what is available (cash
    less what open orders hold). `reference` (optional, unique) makes a retry return the first posting."""

    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.POST_CASH_MOVEMENTS

    @extend_schema(
        request=inline_serializer(
            "CashMovementRequest",
            {
                "type": serializers.ChoiceField(choices=["CSD", "CSW"]),
                "amount": serializers.CharField(help_text="Positive, to the cent."),
                "reason": serializers.CharField(),
                "reference": serializers.CharField(required=False),
            },
        ),
        responses=MOVEMENT_RESPONSES,
    )
    def post(self, request: Request, customer_id: str) -> Response:
        customer = access.customer_for_user(
            user=request.user, customer_id=customer_id, permission=roles.POST_CASH_MOVEMENTS
        )
        if not isinstance(request.data, dict):
            raise ValidationFailed({"body": ["Expected a JSON object with type, amount, reason and reference."]})
        movement = cash_movement_parse(request.data, customer=customer, actor=request.user.get_username())
        posted = movement_post(movement)
        return Response(
            movement_output(posted.posting),
            status=status.HTTP_200_OK if posted.replayed else status.HTTP_201_CREATED,
        )


class JournalView(APIView):
    """Staff with orders.post_cash_movements: move cash (`"type": "JNLC"`, `"amount"`) or shares
    (`"JNLS"`, `"symbol"`, `"quantity"`) from one customer to another, with a reason. Refused when the
    sender has less available; shares keep their cost (the sender's average)."""

    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.POST_CASH_MOVEMENTS

    @extend_schema(
        request=inline_serializer(
            "JournalRequest",
            {
                "type": serializers.ChoiceField(choices=["JNLC", "JNLS"]),
                "fromCustomerId": serializers.CharField(),
                "toCustomerId": serializers.CharField(),
                "amount": serializers.CharField(required=False, help_text="JNLC: positive, to the cent."),
                "symbol": serializers.CharField(required=False, help_text="JNLS: the ticker."),
                "quantity": serializers.IntegerField(required=False, help_text="JNLS: whole shares."),
                "reason": serializers.CharField(),
                "reference": serializers.CharField(required=False),
            },
        ),
        responses=MOVEMENT_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        access.customer_scope(user=request.user, permission=roles.POST_CASH_MOVEMENTS)
        if not isinstance(request.data, dict):
            raise ValidationFailed({"body": [f"Expected a JSON object with {', '.join(sorted(JOURNAL_FIELDS))}."]})
        movement = journal_parse(request.data, actor=request.user.get_username())
        posted = movement_post(movement)
        return Response(
            movement_output(posted.posting),
            status=status.HTTP_200_OK if posted.replayed else status.HTTP_201_CREATED,
        )


CASH_FIELDS = {"type", "amount", "reason", "reference"}
JOURNAL_FIELDS = {"type", "fromCustomerId", "toCustomerId", "amount", "symbol", "quantity", "reason", "reference"}


def cash_movement_parse(data: dict[str, Any], *, customer: Customer, actor: str) -> Movement:
    """A deposit or withdrawal as the API (and the Accounts screen) receive it; 400 naming each bad field."""
    errors = _unknown(data, CASH_FIELDS)
    kind = data.get("type")
    if kind not in ("CSD", "CSW"):
        errors["type"] = ["Must be CSD (a deposit) or CSW (a withdrawal)."]
    amount = _cash(data.get("amount"), errors)
    reason, reference = _reason(data, errors), _reference(data, errors)
    if errors:
        raise ValidationFailed(errors)
    return Movement(
        purpose=PostingPurpose.CASH_DEPOSIT if kind == "CSD" else PostingPurpose.CASH_WITHDRAWAL,
        customer_id=customer.pk,
        asset=CASH_ASSET,
        amount=amount,
        reason=reason,
        actor=actor,
        reference=reference,
    )


def journal_parse(data: dict[str, Any], *, actor: str) -> Movement:
    """A journal as the API (and the Accounts screen) receive it; 400 naming each bad field."""
    errors = _unknown(data, JOURNAL_FIELDS)
    kind = data.get("type")
    if kind not in ("JNLC", "JNLS"):
        errors["type"] = ["Must be JNLC (cash) or JNLS (shares)."]
    parties = {name: _customer(data, name, errors) for name in ("fromCustomerId", "toCustomerId")}
    if parties["fromCustomerId"] is not None and parties["fromCustomerId"] == parties["toCustomerId"]:
        errors["toCustomerId"] = ["A journal moves between two different customers."]
    asset, amount = CASH_ASSET, Decimal(0)
    if kind == "JNLC":
        amount = _cash(data.get("amount"), errors)
        for name in ("symbol", "quantity"):
            if data.get(name) not in (None, ""):
                errors[name] = ["Only for JNLS (shares)."]
    elif kind == "JNLS":
        asset = _symbol(data.get("symbol"), errors)
        amount = _shares(data.get("quantity"), errors)
        if data.get("amount") not in (None, ""):
            errors["amount"] = ["Only for JNLC (cash); shares are a quantity."]
    reason, reference = _reason(data, errors), _reference(data, errors)
    sender, receiver = parties["fromCustomerId"], parties["toCustomerId"]
    if errors or sender is None or receiver is None:
        raise ValidationFailed(errors)
    return Movement(
        purpose=PostingPurpose.JOURNAL,
        customer_id=sender.pk,
        counterparty_id=receiver.pk,
        asset=asset,
        amount=amount,
        reason=reason,
        actor=actor,
        reference=reference,
    )


def _unknown(data: dict[str, Any], allowed: set[str]) -> dict[str, list[str]]:
    return {name: [f"Unknown field. Allowed fields: {', '.join(sorted(allowed))}."] for name in set(data) - allowed}


def _cash(value: Any, errors: dict[str, list[str]]) -> Decimal:
    problem = 'Must be a positive amount to the cent, e.g. "250.00".'
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        errors["amount"] = [problem]
        return Decimal(0)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        errors["amount"] = [problem]
        return Decimal(0)
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")) or amount > MAX_CASH:
        errors["amount"] = [problem if amount <= MAX_CASH else f"Must be at most {MAX_CASH}."]
        return Decimal(0)
    return amount.quantize(Decimal("0.01"))


def _shares(value: Any, errors: dict[str, list[str]]) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHARES:
        errors["quantity"] = [f"Must be a whole number of shares from 1 to {MAX_SHARES:,}."]
        return Decimal(0)
    return Decimal(value)


def _symbol(value: Any, errors: dict[str, list[str]]) -> str:
    symbol = value.strip().upper() if isinstance(value, str) and len(value) <= 12 else None
    if not symbol or not Ticker.objects.filter(symbol=symbol).exists():
        errors["symbol"] = ["Must be a listed ticker."]
        return CASH_ASSET
    return symbol


def _customer(data: dict[str, Any], name: str, errors: dict[str, list[str]]) -> Customer | None:
    value = data.get(name)
    if not isinstance(value, str) or CUSTOMER_TEXT.problem(value) is not None or not value.strip():
        errors[name] = ["Must be a customer id."]
        return None
    customer = Customer.objects.filter(customer_id=value.strip()).first()
    if customer is None:
        errors[name] = [f"Unknown customer {value.strip()!r}."]
    return customer


def _reason(data: dict[str, Any], errors: dict[str, list[str]]) -> str:
    reason = data.get("reason")
    if isinstance(reason, str) and (problem := REASON_TEXT.problem(reason)):
        errors["reason"] = [problem]
    elif not isinstance(reason, str) or not reason.strip():
        errors["reason"] = ["Say why the money or shares move (it is kept with the posting)."]
    else:
        return reason.strip()
    return ""


def _reference(data: dict[str, Any], errors: dict[str, list[str]]) -> str:
    reference = data.get("reference")
    if reference is None:
        return ""
    if not isinstance(reference, str) or (problem := REFERENCE_TEXT.problem(reference)):
        errors["reference"] = [problem if isinstance(reference, str) and problem else "Must be text."]
        return ""
    return reference.strip()
