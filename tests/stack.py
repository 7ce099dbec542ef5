"""A real stack for integration and browser tests: a Celery worker process, the ASGI web tier
(gunicorn with WEB_CONCURRENCY uvicorn workers) and the fill stream's sequencer, all on the test
database and the test Redis, started as `make run` starts them (one worker on every queue here, where
`make run` has one per queue group).

Tests using it are `transaction=True` (the worker must see committed rows) and marked `stack`. The
fixtures are registered once, in tests/conftest.py, so tests/integration and tests/browser share one
stack per session.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.conf import settings
from django.db import connection

from broker import processes
from broker.celery import app as celery_app
from orders.selectors import flow_busy, settlement_pending
from tests.marketdata.yahoo_server import YahooServer

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stack:
    base_url: str
    ws_url: str
    log_dir: Path
    yahoo: YahooServer  # the stand-in for Yahoo Finance the workers fetch market data from
    worker: subprocess.Popen[bytes]  # the Celery worker's main process (its pool processes are its children)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _test_database_url() -> str:
    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


def _wait_for(check: object, what: str, timeout: float, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: a stack process exited with {process.returncode}")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready in {timeout}s")


@pytest.fixture(scope="session")
def stack(
    django_db_setup: None, django_db_blocker: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("stack")
    port = _free_port()
    yahoo = YahooServer()
    yahoo.start()
    env = processes.child_environment(
        DJANGO_SETTINGS_MODULE="broker.settings_test",
        DATABASE_URL=_test_database_url(),
        MARKET_DATA_PROVIDER="yahoo",
        YAHOO_GATEWAY_URL=yahoo.url,  # recorded Yahoo payloads, served locally: no test reaches the internet
        MARKET_DATA_RETRY_BACKOFF="0.2",
    )
    celery_app.control.purge()  # tasks left by earlier non-worker tests would reference truncated rows
    commands = {
        "worker": processes.worker_command(concurrency=2, name=f"test-{port}@%h"),
        "web": processes.web_command(host="127.0.0.1", port=port),
        "sequencer": processes.sequencer_command(),
    }
    children: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, command in commands.items():
            log = (log_dir / f"{name}.log").open("wb")
            logs.append(log)
            children.append(processes.start(command, env=env, stdout=log))
        base_url = f"http://127.0.0.1:{port}"

        def web_ready() -> bool:
            try:
                return httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        def worker_ready() -> bool:
            return bool(celery_app.control.ping(timeout=0.5))

        _wait_for(web_ready, "web server", 60, children)
        _wait_for(worker_ready, "celery worker", 60, children)
        yield Stack(
            base_url=base_url, ws_url=f"ws://127.0.0.1:{port}", log_dir=log_dir, yahoo=yahoo, worker=children[0]
        )
    finally:
        processes.stop(children, grace=20)
        yahoo.stop()
        for log in logs:
            log.close()


@pytest.fixture(autouse=True)
def quiet_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test on the real stack: let the worker finish what the test started before the
    database is flushed for the next one (a flush under a busy worker can deadlock)."""
    yield
    if "stack" not in request.fixturenames:
        return
    wait_until_quiet()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        active = celery_app.control.inspect(timeout=0.5).active() or {}
        reserved = celery_app.control.inspect(timeout=0.5).reserved() or {}
        if not any(active.values()) and not any(reserved.values()):
            return
        time.sleep(0.1)


def wait_until_quiet(timeout: float = 60) -> None:
    """Block until no order is New, no child has a venue attempt in flight and every due trade is settled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not flow_busy() and not settlement_pending():
            return
        time.sleep(0.2)
    raise TimeoutError("the workers did not finish in time")


T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout}s")
