"""`GET /api/customers/{id}/statements?month=YYYY-MM`: a customer's monthly statement (orders/statements.py),
JSON by default, a PDF with `Accept: application/pdf`. Read by the customer and by staff with the blotter."""

from __future__ import annotations

import re
from datetime import date

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import access
from broker.exceptions import ValidationFailed
from orders import activities, roles
from orders.api.accounts import YEAR_MAX
from orders.api.documents import JSONErrors, pdf_renderer
from orders.statements import Month, monthly_statement, statement_pdf

MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


def month_parse(text: str | None) -> Month:
    """`YYYY-MM`, a month that has begun (New York time), from 1970: else a 400 naming `month`."""
    if text is None or not text.strip():
        raise ValidationFailed({"month": ["Required: the statement's month, YYYY-MM (e.g. 2026-11)."]})
    match = MONTH.match(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or not 1970 <= int(match.group(1)) <= YEAR_MAX:
        raise ValidationFailed({"month": [f"Must be a month, YYYY-MM, from 1970-01 to {YEAR_MAX}-12."]})
    month = Month(first=date(int(match.group(1)), int(match.group(2)), 1))
    today = timezone.localtime(timezone.now(), activities.MARKET_TZ).date()
    if month.first > today:
        raise ValidationFailed({"month": [f"{month.label} has not begun: there is nothing to state yet."]})
    return month


class CustomerStatementView(JSONErrors, APIView):
    """A customer's month: opening and closing cash, every activity, month-end positions at the month-end
    close, fees and realized P&L. The current month is provisional (`final: false`)."""

    renderer_classes = [JSONRenderer, pdf_renderer(statement_pdf, "statement")]

    @extend_schema(
        parameters=[OpenApiParameter("month", str, required=True, description="YYYY-MM (New York time).")],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/pdf"): OpenApiTypes.BINARY,
        },
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = access.customer_for_user(user=request.user, customer_id=customer_id, permission=roles.VIEW_BLOTTER)
        month = month_parse(request.query_params.get("month"))
        response = Response(monthly_statement(customer=customer, month=month))
        if request.accepted_renderer.format == "pdf":
            response["Content-Disposition"] = f'inline; filename="statement-{customer.customer_id}-{month.label}.pdf"'
        return response
