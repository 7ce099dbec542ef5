from django.contrib import admin

from broker.admin_base import AppendOnlyAdmin, RecordAdmin, customer_column, price_text, short_uuid, ticker_column
from orders.models import ChildOrder, Order, OrderEvent, Trade

CHILD_FIELDS = (
    "index",
    "quantity",
    "filled_quantity",
    "status",
    "pool",
    "venue_time_in_force",
    "route_reason",
    "venues_tried",
)
EVENT_FIELDS = ("created_at", "kind", "child", "from_status", "to_status", "actor", "detail")


class ChildOrderInline(admin.TabularInline):
    model = ChildOrder
    extra = 0
    can_delete = False
    fields = CHILD_FIELDS
    readonly_fields = CHILD_FIELDS

    def has_add_permission(self, request, obj=None):
        return False


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = EVENT_FIELDS
    readonly_fields = EVENT_FIELDS

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(RecordAdmin):
    list_display = [
        "sequence",
        "created_at",
        "short_id",
        customer_column,
        "direction",
        "quantity",
        ticker_column,
        "order_type",
        "limit",
        "time_in_force",
        "status",
        "filled_quantity",
        "average",
    ]
    list_filter = ["status", "direction", "order_type", "time_in_force", "ticker"]
    search_fields = ["=order_id", "customer__customer_id", "customer__name", "ticker__symbol", "client_order_id"]
    list_select_related = ["customer", "ticker"]
    date_hierarchy = "created_at"
    inlines = [ChildOrderInline, OrderEventInline]

    @admin.display(description="order id")
    def short_id(self, order: Order) -> str:
        return short_uuid(order.order_id)

    @admin.display(description="limit", ordering="price")
    def limit(self, order: Order) -> str:
        return price_text(order.price)

    @admin.display(description="avg price")
    def average(self, order: Order) -> str:
        return price_text(order.average_price)

    # Status and fills move only through the order service (under row locks); never by hand.
    readonly_fields = [
        "order_id",
        "sequence",
        "customer",
        "ticker",
        "direction",
        "order_type",
        "quantity",
        "price",
        "time_in_force",
        "client_order_id",
        "request_fingerprint",
        "status",
        "filled_quantity",
        "filled_notional",
        "average_price",
        "fees",
        "reject_reason",
        "entered_by",
        "created_at",
        "updated_at",
    ]


@admin.register(ChildOrder)
class ChildOrderAdmin(RecordAdmin):
    list_display = [
        "id",
        "parent",
        "index",
        "quantity",
        "filled_quantity",
        "status",
        "pool",
        "venue_time_in_force",
        "attempt",
        "updated_at",
    ]
    list_filter = ["status", "pool"]
    search_fields = ["=parent__order_id", "parent__ticker__symbol"]
    list_select_related = ["parent__ticker", "pool"]
    readonly_fields = [
        "parent",
        "index",
        "quantity",
        "filled_quantity",
        "status",
        "pool",
        "venue_time_in_force",
        "route_reason",
        "venues_tried",
        "attempt",
        "submitted_attempt",
        "created_at",
        "updated_at",
    ]


@admin.register(Trade)
class TradeAdmin(RecordAdmin):
    list_display = [
        "trade_date",
        "short_id",
        customer_column,
        "direction",
        "quantity",
        ticker_column,
        "trade_price",
        "fee",
        "pool",
        "liquidity",
        "settlement_date",
    ]
    list_filter = ["pool__kind", "pool", "direction", "liquidity", "ticker"]
    search_fields = ["=trade_id", "=order__order_id", "customer__customer_id", "ticker__symbol"]
    list_select_related = ["customer", "ticker", "pool"]
    date_hierarchy = "trade_date"

    @admin.display(description="trade id")
    def short_id(self, trade: Trade) -> str:
        return short_uuid(trade.trade_id)

    @admin.display(description="price", ordering="price")
    def trade_price(self, trade: Trade) -> str:
        return price_text(trade.price)

    readonly_fields = [
        "trade_id",
        "order",
        "child",
        "execution",
        "customer",
        "ticker",
        "pool",
        "direction",
        "quantity",
        "price",
        "fee",
        "liquidity",
        "trade_date",
        "settlement_date",
    ]


@admin.register(OrderEvent)
class OrderEventAdmin(AppendOnlyAdmin):
    list_display = ["id", "order", "child", "kind", "from_status", "to_status", "actor", "created_at"]
    list_filter = ["kind", "to_status"]
    search_fields = ["=order__order_id", "actor"]
    readonly_fields = ["order", "child", "kind", "from_status", "to_status", "actor", "detail", "created_at"]
