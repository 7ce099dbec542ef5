"""The bench's own, isolated copy of the stack: embedded Postgres and Redis, the web processes and the
Celery workers, laid out as `make run` lays them out (broker.processes), without beat.

Isolation: everything lives in a fresh directory under var/bench/ (BROKER_VAR_DIR), so a developer's
stack in var/ or a test run in var/test is never touched, and the bench only ever stops processes it
started itself (by their process group). DATABASE_URL / REDIS_URL, when set, are used instead of the
embedded servers and are then left running.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_VAR = BASE_DIR / "var" / "bench"
STOP_GRACE_SECONDS = 10


def prepare_environment() -> Path:
    """Point the settings at a fresh var directory; must run before Django settings are imported."""
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=BENCH_VAR))
    os.environ["BROKER_VAR_DIR"] = str(run_dir)
    # The production settings, not the test ones: the bench measures what `make run` runs.
    os.environ["DJANGO_SETTINGS_MODULE"] = "broker.settings"
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    return run_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, run_dir: Path, *, keep: bool, log: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.keep = keep
        self.log = log
        # Decided from the environment as it was before settings ran (they never set these variables).
        self.owns_postgres = not os.environ.get("DATABASE_URL")
        self.owns_redis = False
        self.django_ready = False
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.port = 0
        self.worker_names: list[str] = []
        self.logs_dir = run_dir / "logs"

    # --- services ------------------------------------------------------------------------------

    def start_services(self) -> None:
        import django

        # Importing the settings starts (or, with DATABASE_URL, skips) the embedded Postgres.
        django.setup()
        self.django_ready = True
        from django.conf import settings
        from django.core.management import call_command

        from broker import embedded

        if not os.environ.get("REDIS_URL"):
            self.owns_redis = embedded.start_redis(settings.EMBEDDED)
        call_command("migrate", interactive=False, verbosity=0)
        # seed_demo prints a generated admin password; the bench has no use for it, so keep it out
        # of the output.
        call_command("seed_demo", stdout=io.StringIO())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start_children(self) -> None:
        """The web processes, one worker per queue group and the stream's sequencer, as in `run_stack`
        (no beat: no periodic job should run mid-measurement). Children are named "web",
        "worker-<pool>" and "sequencer" (bench.memory sums the RSS of the "worker..." ones)."""

        from broker import processes

        self.port = free_port()
        env = processes.child_environment()
        host = socket.gethostname()
        prefix = f"bench-{os.getpid()}-"
        commands = {
            "web": processes.web_command(host="127.0.0.1", port=self.port),
            **processes.worker_pool_commands(node_prefix=prefix, host=host),
            "sequencer": processes.sequencer_command(),
        }
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        for name, command in commands.items():
            with (self.logs_dir / f"{name}.log").open("wb") as log_file:
                self.children[name] = processes.start(command, env=env, stdout=log_file)
        self._wait_ready([f"{prefix}{pool.name}@{host}" for pool in processes.WORKER_POOLS])

    def _wait_ready(self, node_names: list[str], timeout: float = 90) -> None:
        """Until /api/health answers 200 and every worker answers a ping."""
        from broker.celery import app

        deadline = time.monotonic() + timeout
        web_ok = False
        answered: set[str] = set()
        while time.monotonic() < deadline:
            self._check_alive()
            if not web_ok:
                with contextlib.suppress(httpx.HTTPError):
                    web_ok = httpx.get(f"{self.base_url}/api/health", timeout=2).status_code == 200
            if web_ok:
                waiting = [name for name in node_names if name not in answered]
                replies = app.control.ping(destination=waiting, timeout=1) or []
                answered.update(name for reply in replies for name in reply)
                if answered.issuperset(node_names):
                    self.worker_names = node_names
                    return
            time.sleep(0.2)
        missing = ", ".join(sorted(set(node_names) - answered)) or "none"
        raise RuntimeError(
            f"stack not ready after {timeout:.0f}s (web {'up' if web_ok else 'down'}; workers not answering: "
            f"{missing}); logs in {self.logs_dir}"
        )

    def _check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                tail = (self.logs_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {child.returncode}:\n{tail}")

    # --- between phases ------------------------------------------------------------------------

    def reset(self) -> int:
        """Fresh web processes and workers with empty queues; returns the number of queued tasks dropped.

        Between HTTP phases, so what one phase left behind (a backlog, tasks retrying with back-off,
        database connections the web process still holds) cannot slow down or fail the next one.
        The orders whose tasks were dropped are cancelled too: left New or resting, they would keep
        their customers' cash and shares reserved, and the next phase's orders of those customers would
        be rejected for funds and counted as unfilled (what made "14 of 50 not filled" at 10 orders/s).
        """
        from broker.celery import app

        self._stop_children()
        self.children.clear()
        # After the workers' warm shutdown their unacknowledged tasks are back in the queues: drop them.
        dropped = app.control.purge() or 0
        _cancel_open_orders()
        self.start_children()
        return dropped

    def quiet(self) -> int:
        """Stop the web processes and workers for good and drop their queued tasks; returns how many. For
        the in-process phases after the last stack phase: they measure on a quiet machine, not beside
        workers still draining the backlog an overloaded step left (its orders stay open: nothing trades
        any more)."""
        from broker.celery import app

        self._stop_children()
        self.children.clear()
        return app.control.purge() or 0

    # --- teardown ------------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Stop everything this run started; never raises. Returns what went wrong, if anything."""
        # A second Ctrl-C must not cut the teardown short and leave servers behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        problems: list[str] = []
        try:
            self._step(problems, "stop web/workers", self._stop_children)
            if self.django_ready:
                self._step(problems, "close connections", _close_django_connections)
            from broker import embedded

            paths = embedded.EmbeddedPaths(self.run_dir)
            if self.owns_redis:
                self._step(problems, "stop redis", lambda: embedded.stop_redis(paths))
            # Only when a server was ever started here: stop_postgres would otherwise start one.
            if self.owns_postgres and (paths.pgdata / "PG_VERSION").exists():
                self._step(problems, "stop postgres", lambda: embedded.stop_postgres(paths))
            if self.keep or problems:
                self.log(f"kept {self.run_dir} (logs in {self.logs_dir})")
            else:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        return problems

    def _step(self, problems: list[str], what: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as error:  # keep going: the remaining steps still have to run
            problems.append(f"{what}: {error!r}")
            self.log(f"teardown: {what} failed: {error!r}")

    def _stop_children(self) -> None:
        from broker import processes

        processes.stop(list(self.children.values()), grace=STOP_GRACE_SECONDS)


def _cancel_open_orders() -> int:
    """Cancel every order not yet finished (the stack is stopped: nothing else is changing them)."""
    from orders import services
    from orders.models import FINAL_ORDER_STATUSES, Order

    open_ids = list(Order.objects.exclude(status__in=FINAL_ORDER_STATUSES).values_list("pk", flat=True))
    for order_id in open_ids:
        services.order_cancel(order_id=order_id, actor="bench")
    return len(open_ids)


def _close_django_connections() -> None:
    from django.db import connections

    connections.close_all()
