"""Core reference data every app builds on: customers and tickers; and the dead letters of failed tasks."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

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

    # Quote summary, as the last successful market-data fetch (or the shipped snapshot) gave it.
    last_price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    previous_close = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    day_high = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    day_low = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    volume = models.BigIntegerField(null=True, blank=True)
    market_cap = models.BigIntegerField(null=True, blank=True)
    quote_source = models.CharField(max_length=20, blank=True, help_text="Provider of the quote: yahoo or snapshot.")
    quote_fetched_at = models.DateTimeField(null=True, blank=True)
    history_fetched_at = models.DateTimeField(null=True, blank=True)
    stale = models.BooleanField(default=False, help_text="The last fetch failed: prices may be out of date.")
    # Backoff between failed fetches, so an unreachable provider is not asked every minute.
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_fetch_at = models.DateTimeField(null=True, blank=True)
    fetch_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When an order last asked for fresh data (one request at a time)."
    )

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


class PriceBar(models.Model):
    """One daily bar of a ticker, in Yahoo's conventions (OHLC split-adjusted, adj_close also for dividends)."""

    ticker = models.ForeignKey(Ticker, on_delete=models.CASCADE, related_name="bars")
    date = models.DateField()
    open = models.DecimalField(max_digits=20, decimal_places=6)
    high = models.DecimalField(max_digits=20, decimal_places=6)
    low = models.DecimalField(max_digits=20, decimal_places=6)
    close = models.DecimalField(max_digits=20, decimal_places=6)
    adj_close = models.DecimalField(max_digits=20, decimal_places=6)
    volume = models.BigIntegerField()
    source = models.CharField(max_length=20)

    class Meta:
        ordering = ["ticker", "date"]
        constraints = [
            models.UniqueConstraint(fields=["ticker", "date"], name="pricebar_one_per_ticker_and_date"),
            models.CheckConstraint(condition=models.Q(volume__gte=0), name="pricebar_volume_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.date} {self.close}"


class MarketDataJobState(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    PARTIAL = "partial"  # some tickers or parts failed; see the job's failures
    FAILED = "failed"  # nothing could be fetched


class MarketDataJob(models.Model):
    """A request to fetch quote summary and history for some tickers, run as one Celery chord."""

    job_id = models.UUIDField(unique=True, editable=False)
    symbols = ArrayField(models.CharField(max_length=12))
    parts = ArrayField(models.CharField(max_length=10), default=list, help_text="quote and/or history.")
    state = models.CharField(max_length=10, choices=MarketDataJobState.choices, default=MarketDataJobState.PENDING)
    reason = models.CharField(max_length=20, help_text="api, order, schedule, admin or command.")
    requested_by = models.CharField(max_length=150, blank=True)
    results = models.JSONField(default=dict, blank=True, help_text="Per symbol: what was stored or why not.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.job_id} {self.state}"


class FetchPart(models.TextChoices):
    QUOTE = "quote"
    HISTORY = "history"


class MarketDataFailure(models.Model):
    """A failed fetch of one part of one ticker's data; `attempts` counts the tries of that job."""

    job = models.ForeignKey(MarketDataJob, on_delete=models.CASCADE, null=True, blank=True, related_name="failures")
    symbol = models.CharField(max_length=12, db_index=True)
    what = models.CharField(max_length=10, choices=FetchPart.choices)
    kind = models.CharField(max_length=20, help_text="network, timeout, unknown_symbol, empty or bad_data.")
    error = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField(auto_now_add=True)
    last_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When a later fetch of this part succeeded.")

    class Meta:
        ordering = ["-last_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "symbol", "what"], name="marketdatafailure_once_per_job_part"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.what}: {self.kind}"


class DeadLetterStatus(models.TextChoices):
    OPEN = "Open"  # failed for good: someone has to look at it
    RETRYING = "Retrying"  # sent again by hand; waiting for that run
    RESOLVED = "Resolved"  # the run sent by hand completed
    HANDLED = "Handled"  # closed by hand, with a note


OPEN_DEAD_LETTER_STATUSES = (DeadLetterStatus.OPEN, DeadLetterStatus.RETRYING)


class DeadLetter(models.Model):
    """A task that failed after its retries: what was called, with what, why it failed and when.

    One letter per failing call (task and arguments) while it is open: the same call failing again
    counts on it (`failures`, `attempts`) instead of adding another. Written by the worker's failure
    signal (`broker.deadletters`); handled from the Operations screen. Its history is `actions`."""

    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    # sha256 of the task name and arguments: the open letter of one call
    key = models.CharField(max_length=64)
    queue = models.CharField(max_length=100, blank=True)
    # What the call concerns, as the task declares it (`dead_letter_subject`): "order", "batch", ...,
    # and its id (the first argument); empty when the task concerns no one row.
    subject_kind = models.CharField(max_length=20, blank=True)
    subject_id = models.CharField(max_length=100, blank=True)
    error = models.TextField()
    traceback = models.TextField(blank=True)
    task_id = models.CharField(max_length=100)  # the last failed delivery
    attempts = models.PositiveIntegerField(help_text="Runs that failed, retries included, over every delivery.")
    failures = models.PositiveIntegerField(default=1, help_text="Times the call failed for good.")
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=DeadLetterStatus.choices, default=DeadLetterStatus.OPEN)
    retry_task_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-last_failed_at", "-id"]
        indexes = [models.Index(fields=["status", "-last_failed_at"], name="deadletter_status_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(status__in=["Open", "Retrying"]),
                name="deadletter_one_open_per_call",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}{tuple(self.args)} {self.status}"


class DeadLetterAction(models.Model):
    """Append-only history of a dead letter: recorded, failed again, retried, resolved, handled, and the
    manual actions taken on what it concerns, each with who and why."""

    letter = models.ForeignKey(DeadLetter, on_delete=models.PROTECT, related_name="actions")
    action = models.CharField(max_length=40)
    actor = models.CharField(max_length=150)
    note = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["letter", "id"], name="deadletteraction_letter")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"
