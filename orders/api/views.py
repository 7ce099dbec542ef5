"""Order and trade endpoints: validate -> service -> serialize. Clients see only their own customer."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import access
from broker.api import throttling
from broker.api.authentication import TokenAuthentication
from broker.api.filters import UtcIsoDateTimeFilter
from broker.api.permissions import AUTHENTICATED_WITH_PERMISSION
from broker.exceptions import ValidationFailed
from broker.models import Customer
from broker.text import ChoiceTextField, TextField
from orders import kill_switch, roles, selectors, services
from orders.access import order_for_user, orders_for_user, trade_for_user, trades_for_user
from orders.api.documents import JSONErrors, pdf_renderer
from orders.api.serializers import (
    CustomerOutputSerializer,
    HaltOutputSerializer,
    HoldingOutputSerializer,
    OrderDetailOutputSerializer,
    OrderOutputSerializer,
    TradeHistoryOutputSerializer,
    TradeOutputSerializer,
    order_output,
)
from orders.confirmations import confirmation_pdf, trade_confirmation
from orders.models import Direction, Halt, HaltScope, Order, OrderStatus, OrderType, TimeInForce, Trade
from orders.validation import CORRECTION_REASON_TEXT, order_entry_resolve, parse_price

SEED_ORDER = {
    "customerId": "000002",
    "direction": "Buy",
    "ticker": "COIN",
    "type": "Limit",
    "quantity": 8614,
    "price": "250.00",
    "timeInForce": "Day",
    "clientOrderId": "abc-1",
}


class OrderFilter(django_filters.FilterSet):
    customerId = django_filters.CharFilter(field_name="customer__customer_id")
    ticker = django_filters.CharFilter(field_name="ticker__symbol", lookup_expr="iexact")
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    direction = django_filters.ChoiceFilter(choices=Direction.choices)
    dateFrom = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    dateTo = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields: list[str] = []


class TradeFilter(django_filters.FilterSet):
    customerId = django_filters.CharFilter(field_name="customer__customer_id")
    orderId = django_filters.UUIDFilter(field_name="order__order_id")
    ticker = django_filters.CharFilter(field_name="ticker__symbol", lookup_expr="iexact")
    exchangeType = django_filters.ChoiceFilter(
        field_name="pool__kind", choices=[("LitPool", "LitPool"), ("DarkPool", "DarkPool")], method="by_exchange_type"
    )
    exchange = django_filters.CharFilter(field_name="pool__name", lookup_expr="iexact")
    dateFrom = UtcIsoDateTimeFilter(field_name="trade_date", lookup_expr="gte")
    dateTo = UtcIsoDateTimeFilter(field_name="trade_date", lookup_expr="lt")

    class Meta:
        model = Trade
        fields: list[str] = []

    def by_exchange_type(self, queryset: QuerySet[Trade], name: str, value: str) -> QuerySet[Trade]:
        return queryset.filter(pool__kind="Lit" if value == "LitPool" else "Dark")


# Order entry's callers, checked in one query (broker/api/authentication.py); the same answers as
# REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES.
ORDER_ENTRY_AUTHENTICATION = [TokenAuthentication, SessionAuthentication]


class OrderListCreateView(generics.ListAPIView):
    throttle_scope = throttling.ORDERS  # order entry; the list counts against the default scope
    authentication_classes = ORDER_ENTRY_AUTHENTICATION
    serializer_class = OrderOutputSerializer
    filterset_class = OrderFilter
    queryset = Order.objects.none()  # the model, for the OpenAPI filters only; rows come from get_queryset

    def get_queryset(self) -> QuerySet[Order]:
        return orders_for_user(user=self.request.user, permission=roles.VIEW_BLOTTER).order_by("-sequence")

    @extend_schema(
        request=inline_serializer(
            "OrderRequest",
            {
                "customerId": serializers.CharField(),
                "direction": serializers.ChoiceField(choices=Direction.values),
                "ticker": serializers.CharField(),
                "type": serializers.ChoiceField(choices=OrderType.values),
                "quantity": serializers.IntegerField(min_value=1),
                "price": serializers.CharField(required=False, allow_null=True, help_text="Limit only; a decimal."),
                "timeInForce": serializers.ChoiceField(choices=TimeInForce.values, required=False),
                "clientOrderId": serializers.CharField(required=False, max_length=64),
            },
        ),
        responses={
            201: OrderOutputSerializer,
            200: OrderOutputSerializer,
            409: OpenApiResponse(description="The clientOrderId was used before with another body."),
        },
        examples=[OpenApiExample("The seed order", value=SEED_ORDER, request_only=True)],
        description="Place an order. Replaying the same clientOrderId and body returns the original (200); "
        "the same clientOrderId with another body is 409.",
    )
    def post(self, request: Request) -> Response:
        # Refused before the body is read: a caller who may not enter orders learns nothing from a 400.
        access.permission_require(user=request.user, permission=roles.ENTER_ORDER)
        entry = order_entry_resolve(data=request.data, user=request.user)
        placement = services.order_place(
            request=entry.request, customer=entry.customer, ticker=entry.ticker, actor=request.user
        )
        return Response(
            order_output(placement.order), status=status.HTTP_201_CREATED if placement.created else status.HTTP_200_OK
        )


class OrderDetailView(APIView):
    @extend_schema(responses=OrderDetailOutputSerializer)
    def get(self, request: Request, order_id: str) -> Response:
        order = order_for_user(user=request.user, order_id=order_id, permission=roles.VIEW_BLOTTER)
        return Response(OrderDetailOutputSerializer(order).data)


class OrderCancelView(APIView):
    throttle_scope = throttling.ORDERS
    authentication_classes = ORDER_ENTRY_AUTHENTICATION

    @extend_schema(
        request=None,
        responses={
            200: OrderOutputSerializer,
            409: OpenApiResponse(description="The order is final already: nothing left to cancel."),
        },
    )
    def post(self, request: Request, order_id: str) -> Response:
        order = order_for_user(user=request.user, order_id=order_id, permission=roles.CANCEL_ORDER)
        cancelled = services.order_cancel(order_id=order.pk, actor=request.user)
        return Response(order_output(cancelled))


class TradeListView(generics.ListAPIView):
    serializer_class = TradeOutputSerializer
    filterset_class = TradeFilter
    queryset = Trade.objects.none()  # the model, for the OpenAPI filters only; rows come from get_queryset

    def get_queryset(self) -> QuerySet[Trade]:
        queryset = trades_for_user(user=self.request.user, permission=roles.VIEW_BLOTTER).order_by("-id")
        # A busted trade did not happen: listed only when asked for.
        if self.request.query_params.get("includeBusted") != "true":
            queryset = queryset.filter(busted=False)
        return queryset


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: "yes", 1 or "false" are refused, not guessed at."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class HaltListSetView(generics.ListAPIView):
    """The kill switch: list every halt, or halt / release everything, a pool, a ticker or a customer."""

    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.OPERATE_KILL_SWITCH
    serializer_class = HaltOutputSerializer

    class InputSerializer(serializers.Serializer):
        scope = ChoiceTextField(choices=HaltScope.values)
        target = TextField(text=kill_switch.TARGET_TEXT, allow_null=True, required=False, default=None)
        active = StrictBooleanField()
        reason = TextField(text=kill_switch.REASON_TEXT, allow_blank=True, required=False, default="")

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown field. Allowed fields: {', '.join(self.fields)}."] for name in unknown}
                )
            return attrs

    def get_queryset(self) -> QuerySet[Halt]:
        return kill_switch.halts()

    @extend_schema(
        request=InputSerializer,
        responses=HaltOutputSerializer,
        examples=[
            OpenApiExample(
                "Halt a ticker",
                value={"scope": "Ticker", "target": "COIN", "active": True, "reason": "news pending"},
                request_only=True,
            )
        ],
        description="Halt (active true, reason required) or release (active false) one scope target. "
        "Every call is recorded with who and why. Needs permission orders.operate_kill_switch.",
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed({"body": ["Expected a JSON object with scope, target, active and reason."]})
        body = self.InputSerializer(data=request.data)
        if not body.is_valid():
            raise ValidationFailed(
                {name: [str(message) for message in messages] for name, messages in body.errors.items()}
            )
        data = body.validated_data
        target_id = kill_switch.halt_target_id(scope=data["scope"], target=data["target"])
        halt = kill_switch.halt_set(
            scope=data["scope"], target_id=target_id, active=data["active"], reason=data["reason"], actor=request.user
        )
        return Response(HaltOutputSerializer(halt).data)


def _visible_customer(request: Request, customer_id: str) -> Customer:
    """Staff with the blotter may look at any customer (404 if unknown); a client only at its own (403)."""
    return access.customer_for_user(user=request.user, customer_id=customer_id, permission=roles.VIEW_BLOTTER)


class CustomerDetailView(APIView):
    @extend_schema(responses=CustomerOutputSerializer)
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        return Response(CustomerOutputSerializer(selectors.customer_summary(customer=customer)).data)


class CustomerHoldingsView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "CustomerHoldings",
            {"customerId": serializers.CharField(), "holdings": HoldingOutputSerializer(many=True)},
        )
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        rows = selectors.customer_holdings(customer=customer)
        return Response({"customerId": customer.customer_id, "holdings": HoldingOutputSerializer(rows, many=True).data})


class TradeHistoryView(APIView):
    @extend_schema(responses=TradeHistoryOutputSerializer)
    def get(self, request: Request, trade_id: str) -> Response:
        trade = trade_for_user(user=request.user, trade_id=trade_id, permission=roles.VIEW_BLOTTER)
        return Response(TradeHistoryOutputSerializer(trade).data)


class TradeConfirmationView(JSONErrors, APIView):
    """The confirmation of one trade: customer, trade (side, quantity, price, venue, liquidity, fee,
    notional, net amount, trade and settlement dates), its order, and its correction history. JSON by
    default; a PDF with `Accept: application/pdf`. A client reads its own customer's trades; staff with
    orders.view_blotter any."""

    renderer_classes = [JSONRenderer, pdf_renderer(confirmation_pdf, "trade confirmation")]

    @extend_schema(
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/pdf"): OpenApiTypes.BINARY,
        }
    )
    def get(self, request: Request, trade_id: str) -> Response:
        trade = trade_for_user(user=request.user, trade_id=trade_id, permission=roles.VIEW_BLOTTER)
        trade = (
            Trade.objects.select_related("customer", "ticker", "pool", "order")
            .prefetch_related("versions")
            .get(pk=trade.pk)
        )
        response = Response(trade_confirmation(trade=trade))
        if request.accepted_renderer.format == "pdf":
            response["Content-Disposition"] = f'inline; filename="confirmation-{trade.trade_id}.pdf"'
        return response


class TradeCorrectView(APIView):
    """Staff with orders.correct_trade: `{"price": "...", "quantity": n, "reason": "..."}` to amend; `bust`
    needs only a reason."""

    bust = False

    @extend_schema(
        request=inline_serializer(
            "TradeCorrectionRequest",
            {
                "reason": serializers.CharField(),
                "price": serializers.CharField(required=False, help_text="Amend only: the corrected price."),
                "quantity": serializers.IntegerField(required=False, help_text="Amend only: the corrected quantity."),
            },
        ),
        responses={
            200: TradeHistoryOutputSerializer,
            409: OpenApiResponse(description="The trade is busted, or its order is still working."),
        },
    )
    def post(self, request: Request, trade_id: str) -> Response:
        trade = trade_for_user(user=request.user, trade_id=trade_id, permission=roles.CORRECT_TRADE)
        data = request.data if isinstance(request.data, dict) else {}
        allowed = {"reason"} if self.bust else {"reason", "price", "quantity"}
        errors = {name: ["Unknown field."] for name in set(data) - allowed}
        reason = data.get("reason")
        if isinstance(reason, str) and (problem := CORRECTION_REASON_TEXT.problem(reason)):
            errors["reason"] = [problem]
        elif not isinstance(reason, str) or not reason.strip():
            errors["reason"] = ["Say why the trade is corrected."]
        price, quantity = None, data.get("quantity")
        if data.get("price") is not None:
            price, error = parse_price(data["price"])
            if error:
                errors["price"] = [error]
        if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int)):
            errors["quantity"] = ["Must be a whole number of shares."]
        if errors:
            raise ValidationFailed(errors)
        services.trade_correct(
            trade_id=trade.pk, reason=str(reason), actor=request.user, price=price, quantity=quantity, bust=self.bust
        )
        trade = trade_for_user(user=request.user, trade_id=trade_id, permission=roles.CORRECT_TRADE)
        return Response(TradeHistoryOutputSerializer(trade).data)
