"""Recompute the last N days of reports (after an outage, or a fix to the data they read)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reporting import aggregation
from reporting.management.commands.rebuild_reports import progress_bar


class Command(BaseCommand):
    help = "Recompute the reports of the last N days (today included), in date order."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, required=True, help="How many days back, today included (>= 1).")

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["days"]
        if count < 1:
            raise CommandError(f"--days must be at least 1, not {count}.")
        last = aggregation.today()
        first = last - timedelta(days=count - 1)
        # Stored days in the window too: the nightly run may have stored a day that is neither a session
        # nor traded, and the next day carries its totals forward, so it must be recomputed as well.
        days = sorted({*aggregation.days_to_report(first, last), *aggregation.stored_days_from(first)})
        if not days:
            self.stdout.write(f"No day to report from {first} to {last}.")
            return
        aggregation.days_aggregate(days, progress=progress_bar(self.stdout))
        self.stdout.write(f"Recomputed {len(days)} days from {days[0]} to {days[-1]}.")
