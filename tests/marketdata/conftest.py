"""The fake Yahoo server, and the product pointed at it through YAHOO_GATEWAY_URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.marketdata.yahoo_server import YahooServer


@pytest.fixture
def yahoo(settings: Any, tmp_path: Path) -> Iterator[YahooServer]:
    import yfinance
    from yfinance.data import YfData

    server = YahooServer()
    server.start()
    settings.MARKET_DATA_PROVIDER = "yahoo"
    settings.YAHOO_GATEWAY_URL = server.url
    settings.MARKET_DATA_TIMEOUT = 1.0
    settings.MARKET_DATA_RETRY_BACKOFF = 0.01
    settings.VAR_DIR = tmp_path  # yfinance's cookie and timezone caches
    # yfinance keeps one process-wide data object (session, cookie, crumb): start each test afresh.
    YfData._instances.clear()
    yield server
    server.stop()
    YfData._instances.clear()
    yfinance.config.debug.hide_exceptions = True
