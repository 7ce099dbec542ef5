"""Peak Postgres client connections while a phase runs, sampled from pg_stat_activity.

A diagnostic, not a throughput figure: connection churn and exhaustion ("too many clients") were the
first thing to break under load, so every HTTP phase records how close it came to max_connections.
"""

from __future__ import annotations

import threading
from types import TracebackType

import psycopg

from bench.baseline import ConnectionInfo

SAMPLE_SECONDS = 0.25


class PeakConnections:
    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self.peak = 0
        self.max_connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakConnections:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        try:
            # Opened once, before the load: at the peak a new connection may well be refused.
            with self.info.connect(autocommit=True) as conn:
                row = conn.execute("SHOW max_connections").fetchone()
                self.max_connections = int(row[0]) if row else 0
                while not self._stop.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    ).fetchone()
                    self.peak = max(self.peak, int(row[0]) if row else 0)
                    self._stop.wait(SAMPLE_SECONDS)
        except psycopg.Error:
            pass  # diagnostics only: a failed sampler must not fail the phase

    def describe(self) -> str:
        return f"peak {self.peak} Postgres client connections (max_connections {self.max_connections})"
