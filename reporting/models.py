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
