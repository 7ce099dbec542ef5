"""Reconciliation: each run of the checks, the breaks it found, and staff's work on them.

Reporting only reads the other apps' records: a break refers to them by ids and codes kept in
`Break.records` (JSON), never by foreign keys, so a break outlives whatever it points at (a venue
execution that went missing is exactly such a case).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class RunStatus(models.TextChoices):
    RUNNING = "Running"
    CLEAN = "Clean"
    BREAKS = "Breaks"
    FAILED = "Failed"  # a check raised; the run's summary says what


class ReconciliationRun(models.Model):
    """One pass of every reconciliation check over one consistent snapshot of the books."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    triggered_by = models.CharField(max_length=150, help_text="beat, command, or admin:<username>.")
    status = models.CharField(max_length=7, choices=RunStatus.choices, default=RunStatus.RUNNING)
    checks_run = models.PositiveSmallIntegerField(default=0)
    breaks_found = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("run_reconciliation", "Can run reconciliation now")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="Clean") | models.Q(breaks_found=0), name="run_clean_means_no_breaks"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="Breaks") | models.Q(breaks_found__gt=0), name="run_breaks_means_some"
            ),
        ]

    def __str__(self) -> str:
        return f"reconciliation #{self.pk} ({self.status})"


class BreakKind(models.TextChoices):
    ORDER_FILL_MISMATCH = "order_fill_mismatch", "Order filled quantity ≠ its trades"
    TRADE_WITHOUT_EXECUTION = "trade_without_execution", "Trade without venue execution"
    EXECUTION_MISMATCH = "execution_mismatch", "Broker trades ≠ venue executions"
    LEDGER_UNBALANCED = "ledger_unbalanced", "Ledger does not sum to zero"
    CUSTOMER_CASH_MISMATCH = "customer_cash_mismatch", "Customer cash ≠ funds and settled trades"
    HOLDING_MISMATCH = "holding_mismatch", "Holding ≠ transfers and settled trades"
    FOLDED_BALANCE_MISMATCH = "folded_balance_mismatch", "Account folded balance ≠ its entries"


class BreakStatus(models.TextChoices):
    OPEN = "Open"
    ASSIGNED = "Assigned"
    RESOLVED = "Resolved"


# The break workflow as data: the one table `reporting.reconciliation._transition` checks.
# Assigned -> Assigned is a hand-over to someone else.
BREAK_TRANSITIONS: dict[str, frozenset[str]] = {
    BreakStatus.OPEN: frozenset({BreakStatus.ASSIGNED, BreakStatus.RESOLVED}),
    BreakStatus.ASSIGNED: frozenset({BreakStatus.ASSIGNED, BreakStatus.RESOLVED}),
    BreakStatus.RESOLVED: frozenset(),
}


class Break(models.Model):
    """One discrepancy a run found: what should be (`expected`) against what the records say (`actual`)."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="breaks")
    kind = models.CharField(max_length=30, choices=BreakKind.choices)
    # Named `records`, not `objects`, which is the model manager's name.
    records = models.JSONField(
        default=dict, blank=True, help_text="Ids and codes of the records involved (order, trade, pool, asset...)."
    )
    expected = models.TextField()
    actual = models.TextField()
    status = models.CharField(max_length=8, choices=BreakStatus.choices, default=BreakStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-run_id", "id"]
        indexes = [models.Index(fields=["status", "kind"], name="break_status_kind")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="Resolved")
                | (models.Q(resolved_at__isnull=False) & ~models.Q(resolution="")),
                name="break_resolved_has_resolution",
            ),
        ]

    def __str__(self) -> str:
        return f"break #{self.pk} {self.kind} ({self.status})"


class BreakComment(models.Model):
    """Append-only history of a break: staff comments, and every status change (from, to, who, when)."""

    reconciliation_break = models.ForeignKey(Break, on_delete=models.PROTECT, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    text = models.TextField()
    from_status = models.CharField(max_length=8, blank=True)
    to_status = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["reconciliation_break", "id"], name="breakcomment_break")]

    def __str__(self) -> str:
        return f"{self.reconciliation_break_id}: {self.text[:40]}"


# --- Nightly aggregation (reporting/aggregation.py computes every row; nothing else writes them) --------
#
# One row per key and trading day (a date in America/New_York), recomputed in place: a unique key per
# table makes a duplicate day impossible, and running a day again rewrites the same rows. Money is kept
# to the cent (notional and fees are the trades' own, rounded half-up; market value and P&L are rounded
# half-up once, where they are computed); prices and closes keep their own precision.


class CustomerDay(models.Model):
    """A customer's day: what they traded (that day), the running totals the original system kept per
    customer (TotalCommissionPaid, NrTrades, TotalAmountInvested, RemainingFund), and the day's P&L and
    valuation: this is also the customer's daily P&L row."""

    customer = models.ForeignKey("broker.Customer", on_delete=models.PROTECT, related_name="report_days")
    date = models.DateField()
    provisional = models.BooleanField(help_text="Computed before the day ended: the nightly run recomputes it.")
    nr_trades = models.PositiveIntegerField()
    buy_notional = models.DecimalField(max_digits=20, decimal_places=2)
    sell_notional = models.DecimalField(max_digits=20, decimal_places=2)
    commission_paid = models.DecimalField(max_digits=20, decimal_places=2, help_text="The day's fees.")
    total_nr_trades = models.PositiveIntegerField(help_text="Trades up to and including the day.")
    total_commission_paid = models.DecimalField(max_digits=20, decimal_places=2)
    total_amount_invested = models.DecimalField(max_digits=20, decimal_places=2, help_text="Cumulative buy notional.")
    remaining_fund = models.DecimalField(max_digits=20, decimal_places=2, help_text="Cash at the day's close.")
    market_value = models.DecimalField(max_digits=20, decimal_places=2)
    trade_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    position_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    total_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    updated = models.DateTimeField(help_text="When the row was computed.")

    class Meta:
        ordering = ["date", "customer_id"]
        constraints = [models.UniqueConstraint(fields=["customer", "date"], name="customerday_one_per_day")]
        indexes = [models.Index(fields=["date"], name="customerday_date")]

    def __str__(self) -> str:
        return f"customer {self.customer_id} on {self.date}"


class TickerDay(models.Model):
    """A ticker's day on the broker's side: every trade of its customers, whatever the venue."""

    ticker = models.ForeignKey("broker.Ticker", on_delete=models.PROTECT, related_name="report_days")
    date = models.DateField()
    provisional = models.BooleanField()
    nr_trades = models.PositiveIntegerField()
    volume = models.PositiveBigIntegerField()
    notional = models.DecimalField(max_digits=20, decimal_places=2)
    vwap = models.DecimalField(max_digits=18, decimal_places=4)
    open = models.DecimalField(max_digits=18, decimal_places=4, help_text="First trade's price.")
    high = models.DecimalField(max_digits=18, decimal_places=4)
    low = models.DecimalField(max_digits=18, decimal_places=4)
    last = models.DecimalField(max_digits=18, decimal_places=4, help_text="Last trade's price.")
    buy_volume = models.PositiveBigIntegerField()
    sell_volume = models.PositiveBigIntegerField()
    lit_volume = models.PositiveBigIntegerField()
    dark_volume = models.PositiveBigIntegerField()
    fees = models.DecimalField(max_digits=20, decimal_places=2)
    close = models.DecimalField(max_digits=20, decimal_places=6, null=True, help_text="Last daily bar on or before.")
    close_date = models.DateField(null=True)
    updated = models.DateTimeField()

    class Meta:
        ordering = ["date", "ticker_id"]
        constraints = [models.UniqueConstraint(fields=["ticker", "date"], name="tickerday_one_per_day")]
        indexes = [models.Index(fields=["date"], name="tickerday_date")]

    def __str__(self) -> str:
        return f"ticker {self.ticker_id} on {self.date}"


class PositionSnapshot(models.Model):
    """A customer's position in one ticker at a day's close, valued at that day's close, with its P&L.

    Kept for every position held at the close, and for one closed that day (quantity 0, its P&L)."""

    customer = models.ForeignKey("broker.Customer", on_delete=models.PROTECT, related_name="position_snapshots")
    ticker = models.ForeignKey("broker.Ticker", on_delete=models.PROTECT, related_name="position_snapshots")
    date = models.DateField()
    provisional = models.BooleanField()
    quantity = models.BigIntegerField()
    # Shares bought (or transferred in) and what they cost since the position was last flat at a close:
    # the average cost, and what the next day carries forward.
    bought_quantity = models.PositiveBigIntegerField()
    bought_amount = models.DecimalField(max_digits=24, decimal_places=6)
    average_cost = models.DecimalField(max_digits=18, decimal_places=4, null=True)
    close = models.DecimalField(max_digits=20, decimal_places=6, null=True)
    close_date = models.DateField(null=True)
    market_value = models.DecimalField(max_digits=20, decimal_places=2)
    trade_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    position_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    total_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    updated = models.DateTimeField()

    class Meta:
        ordering = ["date", "customer_id", "ticker_id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "ticker", "date"], name="positionsnapshot_one_per_day")
        ]
        indexes = [models.Index(fields=["date", "customer"], name="positionsnapshot_day_customer")]

    def __str__(self) -> str:
        return f"customer {self.customer_id} ticker {self.ticker_id} on {self.date}: {self.quantity}"
