"""Order and trade endpoints: validate -> service -> serialize. Clients see only their own customer."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.api.filters import UtcIsoDateTimeFilter
from broker.exceptions import Forbidden, NotFound, ValidationFailed
from broker.models import Customer
from broker.selectors import customer_for_action, customer_of_user, is_staff
from orders import kill_switch, selectors, services
from orders.api.serializers import (
    CustomerOutputSerializer,
    HaltOutputSerializer,
    HoldingOutputSerializer,
    OrderDetailOutputSerializer,
    OrderOutputSerializer,
    TradeHistoryOutputSerializer,
    TradeOutputSerializer,
)
from orders.models import Direction, Halt, HaltScope, Order, OrderStatus, Trade
from orders.validation import order_entry_resolve, parse_price

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


def visible_to(user: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
    """Staff see everything; a client only its own customer's rows."""
    if is_staff(user):
        return queryset
    customer = customer_of_user(user)
    return queryset.filter(customer=customer) if customer else queryset.none()


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


class OrderListCreateView(generics.ListAPIView):
    serializer_class = OrderOutputSerializer
    filterset_class = OrderFilter

    def get_queryset(self) -> QuerySet[Order]:
        return visible_to(self.request.user, Order.objects.select_related("customer", "ticker")).order_by("-sequence")

    @extend_schema(
        request=dict,
        responses={201: OrderOutputSerializer, 200: OrderOutputSerializer},
        examples=[OpenApiExample("The seed order", value=SEED_ORDER, request_only=True)],
        description="Place an order. Replaying the same clientOrderId and body returns the original (200); "
        "the same clientOrderId with another body is 409.",
    )
    def post(self, request: Request) -> Response:
        entry = order_entry_resolve(data=request.data, user=request.user)
        placement = services.order_place(
            request=entry.request, customer=entry.customer, ticker=entry.ticker, actor=request.user
        )
        return Response(
            OrderOutputSerializer(placement.order).data,
            status=status.HTTP_201_CREATED if placement.created else status.HTTP_200_OK,
        )


def _visible_order(request: Request, order_id: str) -> Order:
    order = (
        visible_to(request.user, Order.objects.select_related("customer", "ticker"))
        .prefetch_related("children__pool")
        .filter(order_id=order_id)
        .first()
    )
    if order is None:
        raise NotFound(f"No order {order_id}.")
    return order


class OrderDetailView(APIView):
    @extend_schema(responses=OrderDetailOutputSerializer)
    def get(self, request: Request, order_id: str) -> Response:
        return Response(OrderDetailOutputSerializer(_visible_order(request, order_id)).data)


class OrderCancelView(APIView):
    @extend_schema(request=None, responses=OrderOutputSerializer)
    def post(self, request: Request, order_id: str) -> Response:
        order = _visible_order(request, order_id)
        cancelled = services.order_cancel(order_id=order.pk, actor=request.user)
        return Response(OrderOutputSerializer(cancelled).data)


class TradeListView(generics.ListAPIView):
    serializer_class = TradeOutputSerializer
    filterset_class = TradeFilter

    def get_queryset(self) -> QuerySet[Trade]:
        queryset = visible_to(
            self.request.user, Trade.objects.select_related("order", "customer", "ticker", "pool")
        ).order_by("-id")
        # A busted trade did not happen: listed only when asked for.
        if self.request.query_params.get("includeBusted") != "true":
            queryset = queryset.filter(busted=False)
        return queryset


class StaffOnly(permissions.BasePermission):
    message = "Only broker staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: "yes", 1 or "false" are refused, not guessed at."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF's CharField would turn 2 into "2")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class HaltListSetView(generics.ListAPIView):
    """The kill switch: list every halt, or halt / release everything, a pool, a ticker or a customer."""

    permission_classes = [permissions.IsAuthenticated, StaffOnly]
    serializer_class = HaltOutputSerializer

    class InputSerializer(serializers.Serializer):
        scope = serializers.ChoiceField(choices=HaltScope.values)
        target = StrictCharField(allow_null=True, required=False, default=None)
        active = StrictBooleanField()
        reason = StrictCharField(allow_blank=True, required=False, default="", trim_whitespace=True)

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
        "Every call is recorded with who and why. Staff only.",
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
    """Staff may look at any customer (404 if unknown); a client only at its own (403 otherwise)."""
    if is_staff(request.user):
        customer = Customer.objects.filter(customer_id=customer_id).first()
        if customer is None:
            raise NotFound(f"No customer {customer_id}.")
        return customer
    return customer_for_action(user=request.user, customer_id=customer_id)


class CustomerDetailView(APIView):
    @extend_schema(responses=CustomerOutputSerializer)
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        return Response(CustomerOutputSerializer(selectors.customer_summary(customer=customer)).data)


class CustomerHoldingsView(APIView):
    @extend_schema(responses=HoldingOutputSerializer(many=True))
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        rows = selectors.customer_holdings(customer=customer)
        return Response({"customerId": customer.customer_id, "holdings": HoldingOutputSerializer(rows, many=True).data})


def _visible_trade(request: Request, trade_id: str) -> Trade:
    trade = (
        visible_to(request.user, Trade.objects.select_related("order", "customer", "ticker", "pool"))
        .filter(trade_id=trade_id)
        .first()
    )
    if trade is None:
        raise NotFound(f"No trade {trade_id}.")
    return trade


class TradeHistoryView(APIView):
    @extend_schema(responses=TradeHistoryOutputSerializer)
    def get(self, request: Request, trade_id: str) -> Response:
        return Response(TradeHistoryOutputSerializer(_visible_trade(request, trade_id)).data)


class TradeCorrectView(APIView):
    """Staff only: `{"price": "...", "quantity": n, "reason": "..."}` to amend; `bust` needs only a reason."""

    bust = False

    @extend_schema(request=dict, responses=TradeHistoryOutputSerializer)
    def post(self, request: Request, trade_id: str) -> Response:
        if not is_staff(request.user):
            raise Forbidden("Only staff may correct trades.")
        trade = _visible_trade(request, trade_id)
        data = request.data if isinstance(request.data, dict) else {}
        allowed = {"reason"} if self.bust else {"reason", "price", "quantity"}
        errors = {name: ["Unknown field."] for name in set(data) - allowed}
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
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
        return Response(TradeHistoryOutputSerializer(_visible_trade(request, trade_id)).data)
