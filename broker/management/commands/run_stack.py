"""`make run`: migrate, seed, then web + Celery worker + Celery beat as one process tree.

Ctrl-C or SIGTERM stops the children (gracefully, then by force), then the embedded Redis and
Postgres this command started, so nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from broker import embedded

GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Run the whole back office (web, worker, beat) on embedded or configured services."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=int(os.environ.get("CELERY_CONCURRENCY", "2")))
        parser.add_argument("--no-seed", action="store_true", help="Skip loading the demo data.")

    def handle(self, *args: Any, host: str, port: int, concurrency: int, no_seed: bool, **options: Any) -> None:
        self.stopping = threading.Event()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        owns_redis = False
        env = dict(os.environ)
        # Children attach to exactly the services this process uses, and never start their own.
        env["DATABASE_URL"] = settings.DATABASE_URL
        env["REDIS_URL"] = settings.REDIS_URL
        env["PYTHONUNBUFFERED"] = "1"
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            if not os.environ.get("REDIS_URL"):
                owns_redis = embedded.start_redis(settings.EMBEDDED)
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            self.stdout.write("migrated, static files collected")
            if not no_seed:
                call_command("seed_demo")
            python = sys.executable
            queues = ",".join(settings.BROKER_QUEUES)
            commands = {
                "web": [python, "-m", "daphne", "-b", host, "-p", str(port), "broker.asgi:application"],
                "worker": [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "broker",
                    "worker",
                    "-Q",
                    queues,
                    "-c",
                    str(concurrency),
                    "-n",
                    "worker@%h",
                    "--loglevel",
                    "INFO",
                ],
                "beat": [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "broker",
                    "beat",
                    "--loglevel",
                    "INFO",
                ],
            }
            for name, command in commands.items():
                if self.stopping.is_set():
                    break
                children[name] = subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
                )
                threading.Thread(target=self._relay, args=(name, children[name].stdout), daemon=True).start()
            if not self.stopping.is_set():
                self.stdout.write(self.style.SUCCESS(f"Broker back office on http://{host}:{port}/ (Ctrl-C stops)"))
            while not self.stopping.is_set():
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with {child.returncode}; stopping everything")
                        self.stopping.set()
                self.stopping.wait(0.5)
        finally:
            self._stop_children(children)
            if owns_redis:
                embedded.stop_redis(settings.EMBEDDED)
            if not os.environ.get("DATABASE_URL"):
                from django.db import connections

                connections.close_all()
                embedded.stop_postgres(settings.EMBEDDED)
            self.stdout.write("stopped")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping.set()

    def _relay(self, name: str, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for line in iter(stream.readline, b""):
            self.stdout.write(f"{name:>6} | {line.decode(errors='replace').rstrip()}")

    def _stop_children(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        for child in children.values():
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Whatever is still there (a stuck child, Celery's pool processes) goes by force.
        for child in children.values():
            _signal_group(child, signal.SIGKILL)
            child.wait()


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)
