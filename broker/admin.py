from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from broker.admin_base import AppendOnlyAdmin, ChangedFieldsAdmin, RecordAdmin, price_text
from broker.marketdata import services as marketdata_services
from broker.models import Customer, MarketDataFailure, MarketDataJob, PriceBar, Ticker
from broker.text import BoundedTextAdmin


@admin.register(Customer)
class CustomerAdmin(BoundedTextAdmin, ChangedFieldsAdmin):
    list_display = ["customer_id", "name", "email", "initial_funds", "user", "created_at"]
    search_fields = ["customer_id", "name", "email"]
    # Initial funds are posted to the ledger once, when the customer is funded (seed_demo, the tests'
    # fixtures); editing the number here, or adding a customer that was never funded, would break cash
    # conservation (invariant 2). Names, e-mail and the client user stay editable.
    readonly_fields = ["initial_funds", "created_at"]
    raw_id_fields = ["user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Ticker)
class TickerAdmin(BoundedTextAdmin, ChangedFieldsAdmin):
    list_display = [
        "symbol",
        "name",
        "exchange",
        "reference",
        "last",
        "previous_close",
        "quote_source",
        "quote_fetched_at",
        "stale",
        "active",
    ]
    list_filter = ["exchange", "active", "stale", "quote_source"]
    search_fields = ["symbol", "name"]
    readonly_fields = [
        "last_price",
        "previous_close",
        "day_high",
        "day_low",
        "volume",
        "market_cap",
        "quote_source",
        "quote_fetched_at",
        "history_fetched_at",
        "stale",
        "consecutive_failures",
        "next_fetch_at",
        "fetch_requested_at",
    ]
    actions = ["fetch_now"]

    @admin.display(description="reference", ordering="reference_price")
    def reference(self, obj: Ticker) -> str:
        return price_text(obj.reference_price)

    @admin.display(description="last", ordering="last_price")
    def last(self, obj: Ticker) -> str:
        return price_text(obj.last_price)

    @admin.action(description="Fetch quote and history now (a market-data job on the workers)")
    def fetch_now(self, request: HttpRequest, queryset: QuerySet[Ticker]) -> None:
        symbols = list(queryset.values_list("symbol", flat=True))
        job = marketdata_services.job_request(symbols=symbols, reason="admin", requested_by=request.user.get_username())
        self.message_user(request, f"Market-data job {job.job_id} started for {', '.join(symbols)}.", messages.SUCCESS)


@admin.register(PriceBar)
class PriceBarAdmin(AppendOnlyAdmin):
    list_display = ["ticker", "date", "open", "high", "low", "close", "adj_close", "volume", "source"]
    list_filter = ["source", "ticker"]
    search_fields = ["ticker__symbol"]
    date_hierarchy = "date"
    list_select_related = ["ticker"]


class FailureInline(admin.TabularInline):
    model = MarketDataFailure
    fields = ("symbol", "what", "kind", "error", "attempts", "last_at", "resolved_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MarketDataJob)
class MarketDataJobAdmin(AppendOnlyAdmin):
    list_display = ["job_id", "state", "reason", "requested_by", "symbol_list", "created_at", "finished_at"]
    list_filter = ["state", "reason"]
    search_fields = ["job_id", "symbols"]
    readonly_fields = [
        "job_id",
        "symbols",
        "parts",
        "state",
        "reason",
        "requested_by",
        "results",
        "created_at",
        "finished_at",
    ]
    inlines = [FailureInline]

    @admin.display(description="tickers")
    def symbol_list(self, obj: MarketDataJob) -> str:
        shown = ", ".join(obj.symbols[:8])
        return shown + (f" (+{len(obj.symbols) - 8})" if len(obj.symbols) > 8 else "")


@admin.register(MarketDataFailure)
class MarketDataFailureAdmin(RecordAdmin):
    """What could not be fetched, how often it was tried, and whether a later fetch recovered it."""

    list_display = ["symbol", "what", "kind", "attempts", "short_error", "job", "last_at", "resolved_at"]
    list_filter = ["kind", "what", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["symbol", "error"]
    readonly_fields = ["job", "symbol", "what", "kind", "error", "attempts", "first_at", "last_at", "resolved_at"]
    list_select_related = ["job"]

    @admin.display(description="error")
    def short_error(self, obj: MarketDataFailure) -> str:
        return obj.error if len(obj.error) <= 90 else obj.error[:87] + "..."
