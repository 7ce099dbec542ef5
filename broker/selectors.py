"""Reads about who may act for which customer."""

from __future__ import annotations

from typing import Any

from broker.exceptions import ApplicationError, Forbidden
from broker.models import Customer, Ticker


def customer_of_user(user: Any) -> Customer | None:
    """The customer a client user is bound to (None for staff and unbound users)."""
    if not user.is_authenticated:
        return None
    return Customer.objects.filter(user=user).first()


def is_staff(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_staff)


def customer_for_action(*, user: Any, customer_id: str) -> Customer:
    """The customer `user` wants to act for, or an error: 403 for someone else's, 400 if unknown."""
    if is_staff(user):
        customer = Customer.objects.filter(customer_id=customer_id).first()
        if customer is None:
            raise ApplicationError(f"Unknown customer {customer_id!r}.", field="customerId")
        return customer
    own = customer_of_user(user)
    if own is None:
        raise Forbidden("This user is not bound to a customer.")
    if own.customer_id != customer_id:
        raise Forbidden(f"This token acts for customer {own.customer_id} only.", field="customerId")
    return own


def ticker_by_symbol(*, symbol: str) -> Ticker:
    ticker = Ticker.objects.filter(symbol=symbol, active=True).first()
    if ticker is None:
        raise ApplicationError(f"Unknown ticker {symbol!r}.", field="ticker")
    return ticker
