"""Admin bases for records that only the services write (orders, trades, venue books, logs)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class RecordAdmin(admin.ModelAdmin):
    """Records only the services write (orders, children, trades, venue books and executions, logs):
    browse, filter and search; never add, change or delete, not even as a superuser.

    A Save on a change page is an unlocked full-row UPDATE of values read before the form was posted:
    it would overwrite whatever a service wrote meanwhile under its row lock (a fill, a status, a
    book's sequence). Changes to these records go through services (kill switch, corrections,
    reconciliation, market-data jobs), from the screens, the API or an admin action.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AppendOnlyAdmin(RecordAdmin):
    """Audit logs and drop copies: append-only rows, read-only here like every service record."""


class ServiceFormAdmin(admin.ModelAdmin):
    """A record staff change through a form whose Save calls services (a reconciliation break): no
    add or delete here, and `save_model` must hand each change to a service, never `obj.save()`."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        raise NotImplementedError(f"{type(self).__name__} must save through a service")


def short_uuid(value: object) -> str:
    """The first block of a UUID: enough to tell rows apart in a list; the detail page has it whole."""
    return str(value)[:8]


def customer_column(obj: Any) -> str:
    return str(obj.customer.customer_id)


def ticker_column(obj: Any) -> str:
    return str(obj.ticker.symbol)


def price_text(value: Any) -> str:
    """Cents when on the cent, else up to four places; '-' for none (a Market order)."""
    from decimal import Decimal

    if value is None:
        return "-"
    return f"{value:.2f}" if value == value.quantize(Decimal("0.01")) else f"{value.normalize()}"


customer_column.short_description = "customer"  # type: ignore[attr-defined]
customer_column.admin_order_field = "customer__customer_id"  # type: ignore[attr-defined]
ticker_column.short_description = "ticker"  # type: ignore[attr-defined]
ticker_column.admin_order_field = "ticker__symbol"  # type: ignore[attr-defined]


class ChangedFieldsAdmin(admin.ModelAdmin):
    """Reference data staff may edit (customers' names, tickers' reference prices, venues' fees): a Save
    writes only the fields the form changed. A full-row UPDATE would write back every other column as it
    was read when the page opened, over what a service (a market-data fetch, say) wrote since."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        changed = [name for name in form.changed_data if name in {field.name for field in obj._meta.concrete_fields}]
        if changed:
            obj.save(update_fields=changed)
