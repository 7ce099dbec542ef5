from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from broker.admin_base import AppendOnlyAdmin, RecordAdmin, customer_column, price_text, short_uuid, ticker_column
from broker.exceptions import ApplicationError
from broker.text import TextFormField
from orders import kill_switch
from orders.models import HALT_TARGET_FIELDS, ChildOrder, Halt, HaltEvent, Order, OrderEvent, Trade, TradeVersion

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


class TradeVersionInline(admin.TabularInline):
    model = TradeVersion
    extra = 0
    can_delete = False
    fields = ("version", "quantity", "price", "fee", "settled", "change", "reason", "changed_by", "changed_at")
    readonly_fields = fields
    verbose_name_plural = "previous versions (corrections)"

    def has_add_permission(self, request, obj=None):
        return False


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
    list_filter = ["pool__kind", "pool", "direction", "liquidity", "busted", "ticker"]
    inlines = [TradeVersionInline]
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
        "version",
        "busted",
    ]


@admin.register(OrderEvent)
class OrderEventAdmin(AppendOnlyAdmin):
    list_display = ["id", "order", "child", "kind", "from_status", "to_status", "actor", "created_at"]
    list_filter = ["kind", "to_status"]
    search_fields = ["=order__order_id", "actor"]
    readonly_fields = ["order", "child", "kind", "from_status", "to_status", "actor", "detail", "created_at"]


# --- kill switch -----------------------------------------------------------------------------------

HALT_EVENT_FIELDS = ("created_at", "active", "reason", "actor")
HALT_TARGET_FORM_FIELDS = ("pool", "ticker", "customer")


class HaltForm(forms.ModelForm):
    """Shows the kill switch service's refusals next to the fields they concern."""

    reason = TextFormField(text=kill_switch.REASON_TEXT, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = Halt
        fields = ["scope", "pool", "ticker", "customer", "active", "reason"]

    def _value(self, name: str) -> Any:
        # Scope and target are read-only once the halt exists, so they are not in cleaned_data then.
        return self.cleaned_data[name] if name in self.cleaned_data else getattr(self.instance, name, None)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        scope = self._value("scope")
        if scope is None:
            return cleaned  # the scope field already carries its error
        target_field = HALT_TARGET_FIELDS.get(scope)
        for other in HALT_TARGET_FORM_FIELDS:
            if other != target_field and self.cleaned_data.get(other) is not None:
                self.add_error(other, f"A {scope} halt has no {other}; clear this field.")
        target = self._value(target_field) if target_field else None
        try:
            kill_switch.halt_validate(
                scope=scope,
                target_id=target.pk if target is not None else None,
                active=bool(self._value("active")),
                reason=self._value("reason") or "",
            )
        except ApplicationError as error:
            for field, messages in error.errors.items():
                form_field = target_field if field == "target" else field
                self.add_error(form_field if form_field in self.fields else None, messages)
        return cleaned


class HaltEventInline(admin.TabularInline):
    model = HaltEvent
    extra = 0
    can_delete = False
    fields = HALT_EVENT_FIELDS
    readonly_fields = HALT_EVENT_FIELDS
    ordering = ["-id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Halt)
class HaltAdmin(admin.ModelAdmin):
    """Halting and releasing go through `kill_switch.halt_set`, which writes the audit event."""

    form = HaltForm
    list_display = ["scope", "halt_target", "active", "reason", "changed_by", "changed_at"]
    list_filter = ["active", "scope"]
    search_fields = ["pool__name", "ticker__symbol", "customer__customer_id", "reason", "changed_by"]
    list_select_related = ["pool", "ticker", "customer"]
    autocomplete_fields = ["ticker", "customer"]
    inlines = [HaltEventInline]

    @admin.display(description="target")
    def halt_target(self, halt: Halt) -> str:
        return halt.target or "-"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Another target is another halt: add that one instead of re-pointing this one's history.
        if obj is not None:
            return ["scope", "pool", "ticker", "customer", "changed_by", "changed_at"]
        return ["changed_by", "changed_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # release it instead; the row keeps its event history

    def save_model(self, request: HttpRequest, obj: Halt, form: forms.ModelForm, change: bool) -> None:
        halt = kill_switch.halt_set(
            scope=obj.scope, target_id=obj.target_id, active=obj.active, reason=obj.reason, actor=request.user
        )
        obj.pk = halt.pk
        obj.refresh_from_db()


@admin.register(HaltEvent)
class HaltEventAdmin(AppendOnlyAdmin):
    list_display = ["id", "created_at", "halt", "active", "reason", "actor"]
    list_filter = ["active", "halt__scope"]
    search_fields = ["actor", "reason", "halt__pool__name", "halt__ticker__symbol", "halt__customer__customer_id"]
    list_select_related = ["halt__pool", "halt__ticker", "halt__customer"]
    readonly_fields = ["halt", "active", "reason", "actor", "created_at"]
