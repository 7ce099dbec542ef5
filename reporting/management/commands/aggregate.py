"""Aggregate one trading day now: its customer days, ticker days and position snapshots.

Idempotent: running a day again recomputes its rows in place. A day that has not ended in New York
yet is stored as provisional; the nightly run (or this command after the day) makes it final.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reporting import aggregation
from reporting.aggregation import DayResult


def day_option(value: str, *, option: str) -> date:
    """A YYYY-MM-DD option as a date; anything else is a CommandError naming the value and the option."""
    try:
        # strptime, not date.fromisoformat: that also takes 20240307 and 2024-W10-4.
        return datetime.strptime(value, "%Y-%m-%d").date()  # noqa: DTZ007 - a calendar date, no time
    except ValueError:
        raise CommandError(f"{option} {value!r} is not a date (YYYY-MM-DD).") from None


def day_summary(result: DayResult) -> str:
    state = "provisional" if result.provisional else "final"
    return (
        f"{result.day} ({state}): {result.customers} customer days, {result.tickers} ticker days, "
        f"{result.positions} position snapshots"
    )


class Command(BaseCommand):
    help = "Aggregate one trading day (default: today in New York) into customer days, ticker days and positions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="The trading day, YYYY-MM-DD (a date in New York); default today.")

    def handle(self, *args: Any, **options: Any) -> None:
        day = day_option(options["date"], option="--date") if options["date"] else aggregation.today()
        self.stdout.write(day_summary(aggregation.day_aggregate(day)))
