"""How the back office's processes are started: one place for `run_stack`, the test stack and the bench."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment of a child process: attached to exactly the services this process uses."""
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.DATABASE_URL
    env["REDIS_URL"] = settings.REDIS_URL
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def web_command(*, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "broker.asgi:application"]


def worker_command(*, concurrency: int, name: str, queues: tuple[str, ...] | None = None) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "broker", "worker",
        "-Q", ",".join(queues or settings.BROKER_QUEUES),
        "-c", str(concurrency), "-n", name, "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip


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
    """SIGTERM each child's process group, wait up to `grace` seconds, then SIGKILL what is left."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    # Whatever is still there (a stuck child, Celery's pool processes) goes by force.
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
