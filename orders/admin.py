from django.contrib import admin

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
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "sequence",
        "order_id",
        "customer",
        "direction",
        "ticker",
        "order_type",
        "quantity",
        "price",
        "time_in_force",
        "status",
        "filled_quantity",
        "created_at",
    ]
    list_filter = ["status", "direction", "order_type", "time_in_force", "ticker"]
    search_fields = ["=order_id", "customer__customer_id", "customer__name", "ticker__symbol", "client_order_id"]
    list_select_related = ["customer", "ticker"]
    date_hierarchy = "created_at"
    inlines = [ChildOrderInline, OrderEventInline]
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
        "fees",
        "reject_reason",
        "entered_by",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False  # orders are entered through the API or the order ticket, which validate and route


@admin.register(ChildOrder)
class ChildOrderAdmin(admin.ModelAdmin):
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
class TradeAdmin(admin.ModelAdmin):
    list_display = [
        "trade_id",
        "customer",
        "direction",
        "ticker",
        "quantity",
        "price",
        "fee",
        "pool",
        "liquidity",
        "trade_date",
        "settlement_date",
    ]
    list_filter = ["pool__kind", "pool", "direction", "liquidity", "ticker"]
    search_fields = ["=trade_id", "=order__order_id", "customer__customer_id", "ticker__symbol"]
    list_select_related = ["customer", "ticker", "pool"]
    date_hierarchy = "trade_date"
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

    def has_add_permission(self, request):
        return False


@admin.register(OrderEvent)
class OrderEventAdmin(admin.ModelAdmin):
    list_display = ["id", "order", "child", "kind", "from_status", "to_status", "actor", "created_at"]
    list_filter = ["kind", "to_status"]
    search_fields = ["=order__order_id", "actor"]
    readonly_fields = ["order", "child", "kind", "from_status", "to_status", "actor", "detail", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False  # append-only audit log

    def has_delete_permission(self, request, obj=None):
        return False
