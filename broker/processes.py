"""How the back office's processes are started: one place for `run_stack`, the test stack and the bench.

The layout of `make run` (and of the bench, without beat):
- web: one gunicorn master and WEB_CONCURRENCY uvicorn worker processes sharing one port (HTTP and the
  `/ws/fills/` WebSocket; a subscriber's messages reach whichever process holds its socket through the
  Redis channel layer);
- one Celery worker per entry of WORKER_POOLS, each consuming only its own queues, so the order flow
  never waits behind a market-data fetch or a settlement batch;
- the fill stream's sequencer (orders/sequencer.py), which numbers and publishes the stream's events;
- Celery beat.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from uvicorn_worker import UvicornWorker

BASE_DIR = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
# Seconds a web worker is given to finish its requests and close its WebSockets on SIGTERM before the
# gunicorn master kills it; below run_stack's grace (15 s), so the master ends its workers itself.
WEB_GRACEFUL_SECONDS = 10
# Seconds an idle HTTP keep-alive connection stays open (uvicorn's timeout_keep_alive; gunicorn's default
# is 2). A client pool keeps idle connections longer (httpx 5 s, most HTTP libraries and load balancers
# more), and a request it sends on a connection the server is just closing fails with a read error: the
# bench's 100/s step saw one. The server must outlast its clients' idle connections, not the reverse.
WEB_KEEP_ALIVE_SECONDS = 75


@dataclass(frozen=True)
class WorkerPool:
    """One Celery worker process tree: the queues it consumes and how many tasks it runs at once."""

    name: str
    queues: tuple[str, ...]
    concurrency_variable: str
    default_concurrency: int
    # Messages the worker holds per pool process. Tasks are acknowledged late, so a message it holds
    # waits for a busy process even while another worker (or process) is free: 1 for queues whose tasks
    # may run long, more only where tasks are short and uniform.
    prefetch_multiplier: int

    @property
    def concurrency(self) -> int:
        return int(os.environ.get(self.concurrency_variable, self.default_concurrency))


# Sized for 2 vCPUs shared with Postgres, Redis and the web processes; each is an environment variable.
WORKER_POOLS = (
    # The order flow: routing and matching are CPU work in Python and Postgres, one process per core.
    # Prefetch 1: a message waits in Redis, where either process takes it, not behind a busy one.
    WorkerPool("orders", ("orders", "lit", "dark"), "CELERY_ORDERS_CONCURRENCY", 2, prefetch_multiplier=1),
    # T+0 settlement of each match's trades: short, uniform postings; one process keeps up and never
    # takes a core from the order flow for long. With one process a message waits for it wherever it
    # is, so prefetching saves the round trip to Redis per task.
    WorkerPool("settlement", ("settlement",), "CELERY_SETTLEMENT_CONCURRENCY", 1, prefetch_multiplier=4),
    # Yahoo fetches (a chord of one task per ticker, waiting on the network, with retries) and the
    # nightly reports and reconciliation: two processes, so one slow fetch does not hold up the rest.
    WorkerPool("marketdata", ("marketdata", "reporting"), "CELERY_MARKETDATA_CONCURRENCY", 2, prefetch_multiplier=1),
)  # fmt: skip


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment of a child process: attached to exactly the services this process uses."""
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.DATABASE_URL
    env["REDIS_URL"] = settings.REDIS_URL
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def web_concurrency() -> int:
    return int(os.environ.get("WEB_CONCURRENCY", "2"))


def web_command(*, host: str, port: int, workers: int | None = None) -> list[str]:
    """gunicorn as process manager of `workers` (default WEB_CONCURRENCY) uvicorn workers on one port."""
    return [
        sys.executable, "-m", "gunicorn", "broker.asgi:application",
        "--bind", f"{host}:{port}", "--workers", str(workers or web_concurrency()),
        "--worker-class", "broker.processes.WebWorker", "--graceful-timeout", str(WEB_GRACEFUL_SECONDS),
        "--keep-alive", str(WEB_KEEP_ALIVE_SECONDS),
        # Its default control socket is one path per user ($HOME/.gunicorn): two stacks would share it.
        "--no-control-socket",
    ]  # fmt: skip


class WebWorker(UvicornWorker):
    """A gunicorn worker serving the ASGI application with uvicorn (httptools, uvloop, websockets)."""

    # The lifespan protocol on: broker.asgi warms the process up before it accepts a connection.
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto", "lifespan": "on"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Open WebSockets are asked to close at SIGTERM; whatever is still running after the grace is cancelled.
        self.config.timeout_graceful_shutdown = int(self.cfg.graceful_timeout)

    def init_process(self) -> None:
        # The master forked this worker; the kernel's death signal is not inherited across fork, so set it
        # again: a master killed by SIGKILL must not leave workers holding the port.
        if sys.platform.startswith("linux"):
            _die_with_parent()
        if os.getppid() != self.ppid:  # the master died before the line above
            sys.exit(0)
        super().init_process()


def worker_command(
    *,
    concurrency: int,
    name: str,
    queues: tuple[str, ...] | None = None,
    prefetch_multiplier: int | None = None,
) -> list[str]:
    command = [
        sys.executable, "-m", "celery", "-A", "broker", "worker",
        "-Q", ",".join(queues or settings.BROKER_QUEUES),
        "-c", str(concurrency), "-n", name, "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip
    if prefetch_multiplier is not None:
        command += ["--prefetch-multiplier", str(prefetch_multiplier)]
    return command


def worker_pool_commands(*, node_prefix: str = "", host: str = "%h") -> dict[str, list[str]]:
    """One Celery worker command per WORKER_POOLS entry, keyed `worker-<pool>`; node names
    `<node_prefix><pool>@<host>` (Celery expands `%h` to the host name)."""
    return {
        f"worker-{pool.name}": worker_command(
            concurrency=pool.concurrency,
            name=f"{node_prefix}{pool.name}@{host}",
            queues=pool.queues,
            prefetch_multiplier=pool.prefetch_multiplier,
        )
        for pool in WORKER_POOLS
    }


def sequencer_command() -> list[str]:
    return [sys.executable, "manage.py", "stream_sequencer"]


def beat_command() -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "broker", "beat", "--loglevel", "INFO"]


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the child when the process that started it dies, even by
    # SIGKILL, so a killed `make run` or test session never leaves a worker consuming its queues.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(
    command: list[str], *, env: Mapping[str, str], stdout: IO[bytes] | int | None = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (a terminal's Ctrl-C reaches only the parent, which stops the
    children in order) that dies with its parent."""
    return subprocess.Popen(
        command,
        cwd=BASE_DIR,
        env=dict(env),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


def stop(children: list[subprocess.Popen[bytes]], *, grace: float = 15) -> None:
    """SIGTERM each child, wait up to `grace` seconds, then SIGKILL whatever is left of its process group.

    Only the child itself gets SIGTERM: it stops what it started in its own order (gunicorn closes its
    workers' connections, a Celery worker lets its pool finish the running tasks). A SIGTERM to the
    whole group killed Celery's pool processes mid-task (WorkerLostError; the task ran again later).
    """
    for child in children:
        child.send_signal(signal.SIGTERM)  # a no-op for a child already reaped
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    # Whatever is still there (a stuck child, a task past the grace, an orphaned pool process) goes by force.
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
