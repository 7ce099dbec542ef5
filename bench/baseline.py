"""Raw database baselines on the bench's own Postgres, at the same client concurrency as the API load.

Two ceilings the application figures are compared with:
- single-row INSERT commits/s: what the database (and a Python client) can commit at all, one row per
  transaction, so each accepted order (one transaction) can never beat it;
- advisory lock + UPDATE + INSERT on one key: the rate of a fully serialized critical section, the
  best one hot book could do if a match were just one locked update and one insert.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

SCRATCH = "bench_scratch"
COUNTER = "bench_counter"
LOCK_KEY = 20261122


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    host: str
    port: str
    user: str
    password: str
    dbname: str

    @classmethod
    def from_django(cls, database: Mapping[str, Any]) -> ConnectionInfo:
        return cls(
            host=str(database.get("HOST") or ""),
            port=str(database.get("PORT") or "5432"),
            user=str(database.get("USER") or ""),
            password=str(database.get("PASSWORD") or ""),
            dbname=str(database.get("NAME") or ""),
        )

    def connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host or None,
            port=self.port,
            user=self.user or None,
            password=self.password or None,
            dbname=self.dbname,
            autocommit=autocommit,
        )


def create_tables(info: ConnectionInfo) -> None:
    # Roughly the width of an order row's hot columns, so the INSERT is not artificially tiny.
    with info.connect(autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCRATCH} ("
            " id bigserial PRIMARY KEY, worker int NOT NULL, quantity int NOT NULL, price numeric(18, 4) NOT NULL,"
            " payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS {COUNTER} (key int PRIMARY KEY, value bigint NOT NULL)")
        conn.execute(f"INSERT INTO {COUNTER} VALUES (1, 0) ON CONFLICT (key) DO NOTHING")


def drop_tables(info: ConnectionInfo) -> None:
    # Matters only with an external DATABASE_URL; the embedded database is thrown away anyway.
    with info.connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}, {COUNTER}")


def _run_threads(
    info: ConnectionInfo, threads: int, seconds: float, body: Callable[[psycopg.Connection[Any], int], None]
) -> float:
    """Run `body(conn, worker)` in a loop on `threads` threads, each with its own connection; commits/s."""
    counts = [0] * threads
    errors: list[BaseException] = []
    # All connections are opened before the clock starts: connection set-up is not what is measured.
    ready = threading.Barrier(threads + 1)
    deadline_box: list[float] = []

    def worker(index: int, conn: psycopg.Connection[Any]) -> None:
        try:
            ready.wait()
            deadline = deadline_box[0]
            done = 0
            while time.perf_counter() < deadline:
                body(conn, index)
                done += 1
            counts[index] = done
        except BaseException as error:  # reported by the caller; a silent thread would skew the rate
            errors.append(error)
        finally:
            conn.close()

    # Autocommit: the INSERT baseline is one statement = one commit, and the locked transaction opens
    # its own BEGIN/COMMIT through conn.transaction().
    connections = [info.connect(autocommit=True) for _ in range(threads)]
    pool = [threading.Thread(target=worker, args=(i, conn), daemon=True) for i, conn in enumerate(connections)]
    for thread in pool:
        thread.start()
    start = time.perf_counter()
    deadline_box.append(start + seconds)
    ready.wait()
    for thread in pool:
        thread.join()
    if errors:
        raise RuntimeError(f"baseline worker failed: {errors[0]!r}") from errors[0]
    return sum(counts) / seconds


def _insert(conn: psycopg.Connection[Any], worker: int) -> None:
    conn.execute(
        f"INSERT INTO {SCRATCH} (worker, quantity, price, payload) VALUES (%s, %s, %s, %s)",
        (worker, 100, "100.0000", "baseline"),
        prepare=True,
    )


def _lock_update_insert(conn: psycopg.Connection[Any], worker: int) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,), prepare=True)
        conn.execute(f"UPDATE {COUNTER} SET value = value + 1 WHERE key = 1", prepare=True)
        conn.execute(
            f"INSERT INTO {SCRATCH} (worker, quantity, price, payload) VALUES (%s, %s, %s, %s)",
            (worker, 100, "100.0000", "locked"),
            prepare=True,
        )


def insert_commits_per_second(info: ConnectionInfo, *, threads: int, seconds: float) -> float:
    return _run_threads(info, threads, seconds, _insert)


def lock_update_insert_per_second(info: ConnectionInfo, *, threads: int, seconds: float) -> float:
    return _run_threads(info, threads, seconds, _lock_update_insert)


def pgbench_insert_per_second(info: ConnectionInfo, *, clients: int, seconds: float) -> float | None:
    """The same INSERT driven by pgbench (C client): shows how much of the baseline the Python client costs.

    Returns None when the pgbench shipped with pgserver is not available.
    """
    try:
        import pgserver
    except ImportError:
        return None
    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    if not binary.exists() and (found := shutil.which("pgbench")):
        binary = Path(found)
    if not binary.exists():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(
            f"INSERT INTO {SCRATCH} (worker, quantity, price, payload) VALUES (:client_id, 100, 100, 'pgb');\n"
        )
    try:
        command = [
            str(binary),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(max(1, round(seconds))),
        ]
        command += ["-f", script.name, "-h", info.host, "-p", info.port, "-U", info.user, info.dbname]
        env = {"PGPASSWORD": info.password} if info.password else {}
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, env={**os.environ, **env}, check=False
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    match = re.search(r"tps = ([\d.]+)", completed.stdout)
    return float(match.group(1)) if match else None
