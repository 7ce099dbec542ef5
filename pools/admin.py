from django.contrib import admin

from broker.admin_base import AppendOnlyAdmin, ChangedFieldsAdmin, RecordAdmin
from pools.models import Book, BookOrder, Execution, Pool


@admin.register(Pool)
class PoolAdmin(ChangedFieldsAdmin):
    list_display = ["name", "description", "kind", "maker_fee", "taker_fee", "active"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "description"]


@admin.register(Book)
class BookAdmin(RecordAdmin):
    list_display = ["__str__", "pool", "ticker", "best_bid", "best_ask", "next_sequence", "updated_at"]
    list_filter = ["pool"]
    search_fields = ["ticker__symbol"]
    # Book state belongs to the matching engine; editing it by hand would desynchronise the venue.
    readonly_fields = ["pool", "ticker", "next_sequence", "best_bid", "best_ask", "liquidity_generation", "updated_at"]


@admin.register(BookOrder)
class BookOrderAdmin(RecordAdmin):
    list_display = [
        "id",
        "book",
        "owner",
        "side",
        "price",
        "quantity",
        "remaining",
        "time_in_force",
        "status",
        "sequence",
        "client_ref",
        "created_at",
    ]
    list_filter = ["status", "owner", "side", "book__pool"]
    search_fields = ["book__ticker__symbol", "=client_ref"]
    list_select_related = ["book__pool", "book__ticker"]
    readonly_fields = [
        "book",
        "owner",
        "client_ref",
        "side",
        "price",
        "quantity",
        "remaining",
        "time_in_force",
        "sequence",
        "status",
        "created_at",
        "updated_at",
    ]


@admin.register(Execution)
class ExecutionAdmin(AppendOnlyAdmin):
    list_display = [
        "execution_id",
        "pool",
        "ticker",
        "aggressor_side",
        "quantity",
        "price",
        "maker_fee",
        "taker_fee",
        "executed_at",
    ]
    list_filter = ["pool", "aggressor_side"]
    search_fields = ["=execution_id", "ticker__symbol"]
    list_select_related = ["pool", "ticker"]
    date_hierarchy = "executed_at"
