"""Writes to core reference data: customers, tickers, API users and their tokens."""

from __future__ import annotations

import secrets
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from broker import roles
from broker.exceptions import ApplicationError
from broker.models import Customer, Ticker


def snapshot_symbols() -> list[str]:
    from broker.marketdata.providers import SnapshotProvider

    return SnapshotProvider().symbols()


@transaction.atomic
def ticker_upsert(*, symbol: str, name: str, exchange: str, reference_price: Decimal, reference_date: date) -> Ticker:
    ticker, _ = Ticker.objects.update_or_create(
        symbol=symbol,
        defaults={
            "name": name,
            "exchange": exchange,
            "reference_price": reference_price.quantize(Decimal("0.0001")),
            "reference_date": reference_date,
        },
    )
    return ticker


@transaction.atomic
def customer_upsert(*, customer_id: str, name: str, email: str, initial_funds: Decimal) -> Customer:
    """Create the customer, or leave an existing one as it is (its funds may have history by now)."""
    customer, _ = Customer.objects.get_or_create(
        customer_id=customer_id, defaults={"name": name, "email": email, "initial_funds": initial_funds}
    )
    return customer


@transaction.atomic
def api_token_for_customer(*, customer_id: str, rotate: bool = False) -> Token:
    """The API token of the customer's client user, creating user and token on first use."""
    customer = Customer.objects.select_for_update(no_key=True).filter(customer_id=customer_id).first()
    if customer is None:
        raise ApplicationError(f"Unknown customer {customer_id!r}.", field="customerId")
    if customer.user is None:
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=f"client-{customer_id}", defaults={"email": customer.email, "is_staff": False}
        )
        user.set_unusable_password()
        user.save()
        customer.user = user
        customer.save(update_fields=["user"])
    return _token(customer.user, rotate=rotate)


@transaction.atomic
def api_token_for_staff(*, username: str, role: str | None = None, rotate: bool = False) -> Token:
    """The API token of staff user `username` with `role` (Trader, Operations or Admin), creating both.

    The token carries the user's permissions (`broker.access`), so the role decides what it may do.
    `role` None keeps an existing user's role; a new user, or one with no role yet, becomes Admin.
    A different `role` replaces the user's role.
    """
    if role is not None and role not in roles.ROLES:
        raise ApplicationError(f"Unknown role {role!r}; use one of {', '.join(roles.ROLES)}.", field="role")
    user_model = get_user_model()
    user, created = user_model.objects.select_for_update().get_or_create(username=username, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save()
    elif not user.is_staff:
        raise ApplicationError(f"User {username!r} exists and is not staff.", field="username")
    if role is not None or not roles.roles_of(user):
        roles.role_assign(user=user, role=role or roles.ADMIN)
    return _token(user, rotate=rotate)


def _token(user: Any, *, rotate: bool) -> Token:
    if rotate:
        Token.objects.filter(user=user).delete()
    token, _ = Token.objects.get_or_create(user=user)
    return token


@transaction.atomic
def staff_superuser_ensure(*, username: str, password: str | None) -> tuple[AbstractUser, str | None]:
    """Create the staff superuser once. Returns the password only when this call generated it."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    user = user_model.objects.create_superuser(username=username, email=f"{username}@broker.local", password=password)
    return user, generated
