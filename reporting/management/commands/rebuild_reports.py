"""Recompute the stored reports from trades alone: delete the rows from a day on, aggregate again.

The deletion and every day's aggregation are one transaction: readers see the old rows until the new
ones are all there, never a hole, and a failed rebuild leaves the old rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandParser, OutputWrapper
from django.db import connection, transaction

from reporting import aggregation
from reporting.management.commands.aggregate import day_option
from reporting.models import CustomerDay, PositionSnapshot, TickerDay

BAR_WIDTH = 30


def progress_bar(out: OutputWrapper) -> Callable[[int, int, date], None]:
    """A text bar for `days_aggregate`: redrawn in place on a terminal, one line per day otherwise
    (a log file or a pipe would get one unreadable line of carriage returns)."""
    in_place = out.isatty()

    def show(number: int, total: int, day: date) -> None:
        filled = BAR_WIDTH * number // total
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {number}/{total} {day}"
        if in_place:
            out.write(f"\r{bar}", ending="\n" if number == total else "")
            out.flush()
        else:
            out.write(bar)

    return show


class Command(BaseCommand):
    help = "Recompute the reports from trades alone, from --since (default: the first trade's day) to today."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="First day to recompute, YYYY-MM-DD; days before it are kept.")

    def handle(self, *args: Any, **options: Any) -> None:
        since = day_option(options["since"], option="--since") if options["since"] else None
        first = since or aggregation.first_trade_day()
        if first is None:
            self.stdout.write("No trades: nothing to rebuild.")
            return
        last = aggregation.today()
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Before the deletion: a nightly run in progress finishes first, and none starts until
                # the rebuild commits (the days' own takes of the lock are re-entrant).
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [aggregation.AGGREGATION_LOCK])
            days = aggregation.days_to_report(first, last)
            deleted = {
                model._meta.verbose_name_plural: model.objects.filter(date__gte=first).delete()[0]
                for model in (PositionSnapshot, CustomerDay, TickerDay)
            }
            self.stdout.write(
                f"Deleted the rows from {first}: " + ", ".join(f"{count} {name}" for name, count in deleted.items())
            )
            if not days:
                self.stdout.write(f"No day to report from {first} to {last}.")
                return
            count = aggregation.days_aggregate(days, progress=progress_bar(self.stdout))
        self.stdout.write(f"Rebuilt {count} days from {days[0]} to {days[-1]}.")
