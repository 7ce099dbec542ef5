"""Where quotes and daily bars come from: Yahoo Finance through yfinance, or the shipped snapshot.

Both providers return the same plain values (`Quote`, `Bar`) and raise only `ProviderError`, so the
services that store market data never see a DataFrame, a float or a library-specific exception.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings

SNAPSHOT_DIR = Path(__file__).resolve().parent.parent / "data"

# Yahoo's exchange codes for the venues our tickers list on, in the names the rest of the product uses.
YAHOO_EXCHANGES = {
    "NMS": "NASDAQ",
    "NGM": "NASDAQ",
    "NCM": "NASDAQ",
    "NAS": "NASDAQ",
    "NYQ": "NYSE",
    "NYS": "NYSE",
    "PCX": "NYSEARCA",
    "ASE": "AMEX",
    "BTS": "BATS",
}


class ProviderError(Exception):
    """A fetch that gave nothing usable. `kind` is what the failure record and the retry policy use."""

    RETRYABLE = frozenset({"network", "timeout", "empty", "bad_data"})

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    name: str
    exchange: str
    currency: str
    last_price: Decimal | None
    previous_close: Decimal | None
    day_high: Decimal | None
    day_low: Decimal | None
    volume: int | None
    market_cap: int | None


@dataclass(frozen=True, slots=True)
class Bar:
    date: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    adj_close: Decimal
    volume: int


class Provider(Protocol):
    name: str

    def quote(self, symbol: str) -> Quote: ...

    def history(self, symbol: str, start: date, end: date) -> list[Bar]: ...


def provider_get(name: str | None = None) -> Provider:
    name = name or settings.MARKET_DATA_PROVIDER
    if name == "snapshot":
        return SnapshotProvider()
    if name == "yahoo":
        return YahooProvider()
    raise ValueError(f"unknown MARKET_DATA_PROVIDER {name!r} (yahoo or snapshot)")


# --- the shipped snapshot ---------------------------------------------------------------------------


class SnapshotProvider:
    """The real Yahoo daily prices shipped in broker/data/prices (see its SOURCES.md); never the network."""

    name = "snapshot"

    def __init__(self, directory: Path = SNAPSHOT_DIR):
        self.directory = directory

    def symbols(self) -> list[str]:
        return sorted(path.stem for path in (self.directory / "prices").glob("*.csv"))

    def bars(self, symbol: str) -> list[Bar]:
        path = self.directory / "prices" / f"{symbol}.csv"
        if not path.exists():
            raise ProviderError("unknown_symbol", f"{symbol} is not in the shipped snapshot")
        with path.open(newline="") as handle:
            return [
                Bar(
                    date=date.fromisoformat(row["date"]),
                    open=Decimal(row["open"]),
                    high=Decimal(row["high"]),
                    low=Decimal(row["low"]),
                    close=Decimal(row["close"]),
                    adj_close=Decimal(row["adj_close"]),
                    volume=int(row["volume"]),
                )
                for row in csv.DictReader(handle)
            ]

    def reference(self) -> dict[str, dict[str, str]]:
        with (self.directory / "tickers.csv").open(newline="") as handle:
            return {row["symbol"]: row for row in csv.DictReader(handle)}

    def quote(self, symbol: str) -> Quote:
        """The snapshot's last session as a quote: its close is the last price, the one before the previous close."""
        bars = self.bars(symbol)
        if not bars:
            raise ProviderError("empty", f"the shipped snapshot of {symbol} has no bars")
        last, previous = bars[-1], bars[-2] if len(bars) > 1 else None
        row = self.reference().get(symbol)
        name, exchange = (row["name"], row["exchange"]) if row else SNAPSHOT_ETFS.get(symbol, (symbol, ""))
        return Quote(
            symbol=symbol,
            name=name,
            exchange=exchange,
            currency="USD",
            last_price=last.close,
            previous_close=previous.close if previous else None,
            day_high=last.high,
            day_low=last.low,
            volume=last.volume,
            market_cap=None,
        )

    def history(self, symbol: str, start: date, end: date) -> list[Bar]:
        return [bar for bar in self.bars(symbol) if start <= bar.date <= end]


SNAPSHOT_ETFS = {"SPY": ("SPDR S&P 500 ETF Trust", "NYSEARCA")}


# --- Yahoo Finance through yfinance ------------------------------------------------------------------


def _yahoo_session_class() -> type:
    from curl_cffi import requests as curl_requests

    class YahooSession(curl_requests.Session):
        """curl_cffi's browser-impersonating session with our timeout and, optionally, a gateway.

        yfinance imports its base URLs by value and hard-codes some hosts, so a gateway (an egress
        proxy, a recording proxy, or the tests' local server) is reached by rewriting each request
        `https://<host>/<path>` to `<YAHOO_GATEWAY_URL>/<host>/<path>` here, not by patching URLs.
        """

        def __init__(self, *, gateway: str, timeout: float, offline: bool):
            super().__init__(impersonate="chrome")
            self.gateway = gateway.rstrip("/")
            self.cap = timeout
            self.offline = offline

        def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
            if self.gateway:
                parts = urlsplit(url)
                url = f"{self.gateway}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
            elif self.offline:
                from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError

                raise CurlConnectionError(f"BROKER_OFFLINE is set and no YAHOO_GATEWAY_URL: not fetching {url}")
            kwargs["timeout"] = min(float(kwargs.get("timeout") or self.cap), self.cap)
            return super().request(method, url, *args, **kwargs)

    return YahooSession


class YahooProvider:
    """Quote summary (`Ticker.info`) and daily bars (`Ticker.history`) with yfinance's own parsing."""

    name = "yahoo"

    def __init__(self) -> None:
        import yfinance

        self.yf = yfinance
        # Errors must reach us as exceptions: by default yfinance logs some and returns empty results.
        yfinance.config.debug.hide_exceptions = False
        cache = Path(settings.VAR_DIR) / "yfinance"
        cache.mkdir(parents=True, exist_ok=True)
        yfinance.cache.set_cache_location(str(cache))
        self.session = _yahoo_session_class()(
            gateway=settings.YAHOO_GATEWAY_URL, timeout=settings.MARKET_DATA_TIMEOUT, offline=settings.BROKER_OFFLINE
        )

    def _ticker(self, symbol: str) -> Any:
        return self.yf.Ticker(symbol, session=self.session)

    def quote(self, symbol: str) -> Quote:
        info = self._call(symbol, lambda: self._ticker(symbol).info)
        if not isinstance(info, dict) or not (info.get("longName") or info.get("shortName")):
            raise ProviderError("empty", f"Yahoo returned no quote summary for {symbol}")
        exchange = str(info.get("exchange") or "")
        return Quote(
            symbol=symbol,
            name=str(info.get("longName") or info.get("shortName")),
            exchange=YAHOO_EXCHANGES.get(exchange, exchange),
            currency=str(info.get("currency") or "USD")[:3],
            last_price=_price(info.get("currentPrice") or info.get("regularMarketPrice")),
            previous_close=_price(info.get("previousClose") or info.get("regularMarketPreviousClose")),
            day_high=_price(info.get("dayHigh") or info.get("regularMarketDayHigh")),
            day_low=_price(info.get("dayLow") or info.get("regularMarketDayLow")),
            volume=_integer(info.get("volume") or info.get("regularMarketVolume")),
            market_cap=_integer(info.get("marketCap")),
        )

    def history(self, symbol: str, start: date, end: date) -> list[Bar]:
        frame = self._call(
            symbol,
            lambda: self._ticker(symbol).history(
                start=start.isoformat(),
                end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                interval="1d",
                auto_adjust=False,  # keep Yahoo's close and adj close apart, as the snapshot has them
                actions=False,
                repair=False,
                timeout=settings.MARKET_DATA_TIMEOUT,
            ),
        )
        if frame is None or frame.empty:
            raise ProviderError("empty", f"no historical data retrieved for {symbol}")
        bars = []
        for moment, row in frame.iterrows():
            prices = [_price(row[column]) for column in ("Open", "High", "Low", "Close", "Adj Close")]
            volume = _integer(row["Volume"])
            values = [price for price in prices if price is not None]
            if len(values) < len(prices) or volume is None:
                continue  # Yahoo leaves a session without trades as NaNs: no bar for that day
            open_, high, low, close, adj_close = values
            bars.append(Bar(moment.date(), open_, high, low, close, adj_close, volume))
        if not bars:
            raise ProviderError("empty", f"no historical data retrieved for {symbol}")
        return bars

    def _call(self, symbol: str, fetch: Any) -> Any:
        from curl_cffi.requests.exceptions import HTTPError, Timeout
        from yfinance.exceptions import YFException, YFRateLimitError, YFTickerMissingError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas deprecation chatter from inside yfinance
                return fetch()
        except HTTPError as error:
            status = getattr(getattr(error, "response", None), "status_code", None)
            if status == 404:
                raise ProviderError("unknown_symbol", f"Yahoo knows no symbol {symbol} (HTTP 404)") from error
            raise ProviderError("network", f"HTTP {status} from Yahoo for {symbol}") from error
        except Timeout as error:
            raise ProviderError(
                "timeout", f"Yahoo did not answer in {settings.MARKET_DATA_TIMEOUT}s: {error}"
            ) from error
        except YFTickerMissingError as error:
            # "No data found, symbol may be delisted" (or no timezone): retrying within seconds cannot help;
            # the after-close schedule asks again later.
            raise ProviderError("unknown_symbol", str(error)) from error
        except YFRateLimitError as error:
            raise ProviderError("network", f"rate limited by Yahoo: {error}") from error
        except YFException as error:
            raise ProviderError("bad_data", str(error)) from error
        except OSError as error:  # curl_cffi's connection and DNS errors are OSErrors
            raise ProviderError("network", f"{type(error).__name__}: {error}") from error
        except (KeyError, ValueError, TypeError, IndexError) as error:
            # yfinance's parser met a payload it did not expect: treat it as bad data, not a crash.
            raise ProviderError(
                "bad_data", f"{type(error).__name__} parsing Yahoo's answer for {symbol}: {error}"
            ) from error


def _finite(value: Any) -> float | None:
    """yfinance's number (float, numpy scalar or None) as a float; None for missing, NaN or infinite."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _price(value: Any) -> Decimal | None:
    """A positive float from yfinance as the decimal Yahoo printed (6 places, as in the shipped CSVs)."""
    number = _finite(value)
    if number is None or number <= 0 or number >= 1e12:  # beyond any share price: Yahoo's garbage, not a price
        return None
    return Decimal(repr(number)).quantize(Decimal("0.000001"))


def _integer(value: Any) -> int | None:
    number = _finite(value)
    return int(number) if number is not None and number >= 0 else None
