"""Reads of core reference data. Who may act for which customer is `broker.access`."""

from __future__ import annotations

from typing import Any

from broker.exceptions import ApplicationError
from broker.models import Customer, Ticker


def customer_of_user(user: Any) -> Customer | None:
    """The customer a client user is bound to (None for staff and unbound users)."""
    if not user.is_authenticated:
        return None
    return Customer.objects.filter(user=user).first()


def ticker_by_symbol(*, symbol: str) -> Ticker:
    ticker = Ticker.objects.filter(symbol=symbol, active=True).first()
    if ticker is None:
        raise ApplicationError(f"Unknown ticker {symbol!r}.", field="ticker")
    return ticker
