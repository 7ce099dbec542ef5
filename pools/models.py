"""Venues: their fee schedules, their books of resting orders and their executions (the drop copy).

A venue knows orders only by an opaque `client_ref` (the broker's child order id); it never knows
customers, cash or holdings.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models

from broker.models import Ticker


class PoolKind(models.TextChoices):
    LIT = "Lit", "Lit pool (exchange)"
    DARK = "Dark", "Dark pool"


class Pool(models.Model):
    name = models.CharField(max_length=12, unique=True, help_text="Venue code, e.g. EDGA.")
    description = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=4, choices=PoolKind.choices)
    # Per-share fees charged to the side that rested (maker) or took liquidity (taker).
    maker_fee = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal("0"))
    taker_fee = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal("0"))
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(maker_fee__gte=0) & models.Q(taker_fee__gte=0), name="pool_fees_not_negative"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def exchange_type(self) -> str:
        """The name clients know from the seed output: LitPool or DarkPool."""
        return "LitPool" if self.kind == PoolKind.LIT else "DarkPool"


class Book(models.Model):
    """One venue's book for one ticker. Its row lock is the "one matcher at a time" guarantee."""

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="books")
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, related_name="books")
    # Time priority counter, handed out under the row lock so it is gap-free and ordered per book.
    next_sequence = models.BigIntegerField(default=1)
    # Displayed top of book (lit pools), kept current by every match so the NBBO is one cheap query.
    best_bid = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    best_ask = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    # How many times the simulated liquidity provider has (re)quoted: part of its RNG seed.
    liquidity_generation = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "ticker"], name="book_unique_pool_ticker")]

    def __str__(self) -> str:
        return f"{self.pool.name}:{self.ticker.symbol}"


class Side(models.TextChoices):
    BUY = "Buy"
    SELL = "Sell"


class BookOrderOwner(models.TextChoices):
    CLIENT = "Client", "Broker child order"
    LIQUIDITY = "Liquidity", "Simulated liquidity provider"


class BookOrderStatus(models.TextChoices):
    OPEN = "Open"
    FILLED = "Filled"
    CANCELLED = "Cancelled"


class BookOrder(models.Model):
    """An order as the venue sees it. Every order a venue accepted is kept, resting or not."""

    book = models.ForeignKey(Book, on_delete=models.PROTECT, related_name="orders")
    owner = models.CharField(max_length=10, choices=BookOrderOwner.choices)
    client_ref = models.BigIntegerField(null=True, blank=True, help_text="Broker child order id.")
    side = models.CharField(max_length=4, choices=Side.choices)
    price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    quantity = models.PositiveIntegerField()
    remaining = models.PositiveIntegerField()
    time_in_force = models.CharField(max_length=3)
    sequence = models.BigIntegerField()
    status = models.CharField(max_length=9, choices=BookOrderStatus.choices, default=BookOrderStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["book", "sequence"],
                condition=models.Q(status="Open"),
                name="bookorder_open_by_book",
            ),
            models.Index(fields=["client_ref"], name="bookorder_client_ref"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(remaining__lte=models.F("quantity")), name="bookorder_remaining_le_quantity"
            ),
            models.UniqueConstraint(fields=["book", "sequence"], name="bookorder_unique_sequence"),
            # A child order is open at one venue at a time: re-routing closes it first.
            models.UniqueConstraint(
                fields=["client_ref"],
                condition=models.Q(status="Open") & models.Q(client_ref__isnull=False),
                name="bookorder_one_open_per_child",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="Open") | models.Q(remaining__gt=0), name="bookorder_open_has_remaining"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.book} {self.side} {self.remaining}/{self.quantity} @ {self.price or 'MKT'}"


class Execution(models.Model):
    """The venue's record of one match between a resting (maker) and an incoming (taker) order."""

    execution_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    book = models.ForeignKey(Book, on_delete=models.PROTECT, related_name="executions")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="executions")
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, related_name="executions")
    maker = models.ForeignKey(BookOrder, on_delete=models.PROTECT, related_name="maker_executions")
    taker = models.ForeignKey(BookOrder, on_delete=models.PROTECT, related_name="taker_executions")
    aggressor_side = models.CharField(max_length=4, choices=Side.choices)
    price = models.DecimalField(max_digits=18, decimal_places=4)
    quantity = models.PositiveIntegerField()
    maker_fee = models.DecimalField(max_digits=18, decimal_places=2)
    taker_fee = models.DecimalField(max_digits=18, decimal_places=2)
    executed_at = models.DateTimeField()
    # Corrections agreed with the venue change these; each change is kept in ExecutionCorrection.
    busted = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="execution_quantity_positive"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="execution_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.pool.name} {self.ticker.symbol} {self.quantity} @ {self.price}"


class ExecutionCorrection(models.Model):
    """The venue's record of a corrected or busted execution: the values before the change."""

    execution = models.ForeignKey(Execution, on_delete=models.PROTECT, related_name="corrections")
    previous_price = models.DecimalField(max_digits=18, decimal_places=4)
    previous_quantity = models.PositiveIntegerField()
    previous_maker_fee = models.DecimalField(max_digits=18, decimal_places=2)
    previous_taker_fee = models.DecimalField(max_digits=18, decimal_places=2)
    busted = models.BooleanField(default=False)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"correction of execution {self.execution_id}"
