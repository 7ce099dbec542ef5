"""Import the shipped Yahoo snapshot (broker/data): tickers, quotes and every daily bar. Offline, idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from broker.marketdata import services
from broker.marketdata.providers import ProviderError


class Command(BaseCommand):
    help = "Load tickers, quote summaries and daily history from the shipped snapshot (no network)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tickers", nargs="*", help="Symbols to load (default: every shipped one).")

    def handle(self, *args: Any, tickers: list[str], **options: Any) -> None:
        try:
            loaded = services.snapshot_load(symbols=[symbol.upper() for symbol in tickers] or None)
        except ProviderError as error:
            raise CommandError(error.message) from error
        for symbol, count in loaded.items():
            self.stdout.write(f"{symbol}: {count} daily bars")
        self.stdout.write(f"Loaded {sum(loaded.values())} bars of {len(loaded)} tickers from the shipped snapshot.")
