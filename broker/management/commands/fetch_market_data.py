"""Fetch quote summary and daily history from Yahoo Finance (yfinance) for the given tickers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from broker.exceptions import ApplicationError
from broker.marketdata import services
from broker.models import MarketDataJobState


class Command(BaseCommand):
    help = (
        "Fetch quote summary and daily history for TICKER... now, in this process, with the workers' retries "
        "and backoff; --queue hands the job to the workers instead. Unknown symbols are added as tickers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tickers", nargs="+", help="Symbols, e.g. AAPL MSFT.")
        parser.add_argument("--queue", action="store_true", help="Run as a job on the marketdata workers.")
        parser.add_argument(
            "--provider", choices=["yahoo", "snapshot"], help="Override MARKET_DATA_PROVIDER for this run."
        )

    def handle(self, *args: Any, tickers: list[str], queue: bool, provider: str | None, **options: Any) -> None:
        from broker.marketdata.providers import provider_get

        try:
            symbols = services.parse_symbols(tickers)
            job = services.job_request(
                symbols=symbols,
                reason="command",
                requested_by="fetch_market_data",
                create_unknown=True,
                dispatch=queue,
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        if queue:
            self.stdout.write(f"Job {job.job_id} queued for {', '.join(symbols)}.")
            return
        job = services.job_run_inline(job=job, provider=provider_get(provider))
        for symbol, parts in job.results.items():
            for part, result in parts.items():
                self.stdout.write(f"{symbol} {part}: {result}")
        self.stdout.write(f"Job {job.job_id}: {job.state}.")
        if job.state != MarketDataJobState.DONE:
            raise CommandError(f"{job.state}: see the failures above (also in admin, Market data failures).")
