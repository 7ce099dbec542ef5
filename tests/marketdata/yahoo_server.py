"""A local stand-in for Yahoo Finance that serves real recorded responses (tests/fixtures/yahoo).

The product reaches it through YAHOO_GATEWAY_URL, which rewrites `https://<host>/<path>` to
`<gateway>/<host>/<path>`: yfinance builds every request and parses every answer itself.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yahoo"

CHARTS = {
    "MSFT": ("raw", "v8_chart_MSFT_1d_2021-02-01_2022-01-31_events-div.json"),
    "AAPL": ("wrapped", "historicalv8-AAPL-2020-01-01-to-2021-01-04.json"),
}
QUOTE_SUMMARIES_RAW = {"ARMK": "v10_quoteSummary_ARMK_all-modules.json"}
QUOTE_SUMMARY_MODULES = {
    "AAPL": ["financialData", "quoteType", "defaultKeyStatistics", "assetProfile", "summaryDetail"],
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def chart_payload(symbol: str) -> Any:
    """The recorded chart answer for `symbol`, as JSON (what the tests compare stored bars with)."""
    kind, name = CHARTS[symbol]
    data = fixture(name)
    return data if kind == "raw" else data["response"]["bodyJson"]


def quote_summary_payload(symbol: str, modules: list[str]) -> bytes | None:
    if symbol in QUOTE_SUMMARIES_RAW:
        return (FIXTURES / QUOTE_SUMMARIES_RAW[symbol]).read_bytes()  # byte for byte as Yahoo sent it
    if symbol in QUOTE_SUMMARY_MODULES:
        result: dict[str, Any] = {}
        for module in modules:
            if module in QUOTE_SUMMARY_MODULES[symbol]:
                body = fixture(f"quoteSummary-{module}-{symbol}.json")["response"]["bodyJson"]
                result.update(body["quoteSummary"]["result"][0])
        return json.dumps({"quoteSummary": {"result": [result], "error": None}}).encode()
    return None


class YahooServer:
    """`mode`: "ok" serves recordings, "slow" answers after `delay` seconds; `stop()` makes it refuse."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 5.0
        self.requests: list[str] = []
        # Requests being answered right now, and the most seen at once: proof that fetches ran in parallel.
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                with outer._lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if outer.mode == "slow":
                        time.sleep(outer.delay)
                    status, body, headers = outer.answer(self.path)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the listening socket: connections to the port are now refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, raw_path: str) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(raw_path)
        host, _, path = parts.path.lstrip("/").partition("/")
        query = parse_qs(parts.query)
        json_type = {"Content-Type": "application/json;charset=utf-8"}
        if host == "fc.yahoo.com":
            return 200, b"", {"Set-Cookie": "A3=d=AQABBtest; Domain=.yahoo.com; Path=/; Secure"}
        if path == "v1/test/getcrumb":
            return 200, b"recorded-crumb", {"Content-Type": "text/plain"}
        if path.startswith("v8/finance/chart/"):
            symbol = path.rsplit("/", 1)[-1]
            if symbol in CHARTS:
                return 200, json.dumps(chart_payload(symbol)).encode(), json_type
            error = {"code": "Not Found", "description": "No data found, symbol may be delisted"}
            return 404, json.dumps({"chart": {"result": None, "error": error}}).encode(), json_type
        if path.startswith("v10/finance/quoteSummary/"):
            symbol = path.rsplit("/", 1)[-1]
            modules = query.get("modules", [""])[0].split(",")
            body = quote_summary_payload(symbol, modules)
            if body is not None:
                return 200, body, json_type
            error = {"code": "Not Found", "description": f"Quote not found for symbol: {symbol}"}
            return 404, json.dumps({"quoteSummary": {"result": None, "error": error}}).encode(), json_type
        if path.startswith("ws/fundamentals-timeseries/"):
            # `Ticker.info` also asks for the trailing PEG ratio; no recording of it exists.
            return 200, json.dumps({"timeseries": {"result": [], "error": None}}).encode(), json_type
        if path.startswith("v7/finance/quote"):
            return 200, json.dumps({"quoteResponse": {"result": [], "error": None}}).encode(), json_type
        return 404, b'{"finance":{"result":null,"error":{"code":"Not Found"}}}', json_type
