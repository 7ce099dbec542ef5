"""Core reference data every app builds on: customers and tickers."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

CUSTOMER_ID_VALIDATOR = RegexValidator(r"^\d{6}$", "A customerId is six digits, like 000002.")


class Customer(models.Model):
    """A client of the broker. API users are bound to exactly one customer."""

    customer_id = models.CharField(max_length=6, unique=True, validators=[CUSTOMER_ID_VALIDATOR])
    name = models.CharField(max_length=200)
    email = models.EmailField()
    initial_funds = models.DecimalField(max_digits=18, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="customer",
        help_text="The API user acting for this customer (client token).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer_id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(initial_funds__gte=0), name="customer_initial_funds_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.name}"


class Ticker(models.Model):
    """A listed equity. `reference_price` anchors the simulated liquidity and Market-order checks."""

    symbol = models.CharField(max_length=12, unique=True)
    name = models.CharField(max_length=200, blank=True)
    exchange = models.CharField(max_length=20, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    reference_price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    reference_date = models.DateField(null=True, blank=True, help_text="Close date the reference price is from.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reference_price__isnull=True) | models.Q(reference_price__gt=0),
                name="ticker_reference_price_positive",
            )
        ]

    def __str__(self) -> str:
        return self.symbol
