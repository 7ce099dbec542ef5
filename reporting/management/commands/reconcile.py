"""Run reconciliation now: one line per break, then the summary as the last line.

Exit status 0 when the books reconcile, 1 when the run found breaks (for cron and CI).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand

from reporting.models import RunStatus
from reporting.reconciliation import reconciliation_run


class Command(BaseCommand):
    help = "Run every reconciliation check now and record the run; exit status 1 if it found breaks."

    def handle(self, *args: Any, **options: Any) -> None:
        run = reconciliation_run(triggered_by="command")
        for item in run.breaks.order_by("id"):
            self.stdout.write(f"break #{item.pk} {item.kind}: expected {item.expected}; actual {item.actual}")
        self.stdout.write(f"reconciliation #{run.pk}: {run.summary}")
        if run.status != RunStatus.CLEAN:
            sys.exit(1)
