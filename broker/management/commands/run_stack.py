"""`make run`: migrate, seed, then the web processes, one Celery worker per queue group, the fill
stream's sequencer and Celery beat as one process tree (the layout is `broker.processes`).

Ctrl-C or SIGTERM stops the children (gracefully, then by force), then the embedded Redis and
Postgres this command started, so nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from broker import embedded, processes

GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Run the whole back office (web, workers, beat) on embedded or configured services."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", "8000")))
        parser.add_argument("--no-seed", action="store_true", help="Skip loading the demo data.")

    def handle(self, *args: Any, host: str, port: int, no_seed: bool, **options: Any) -> None:
        self.stopping = threading.Event()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            if not os.environ.get("REDIS_URL"):
                embedded.start_redis(settings.EMBEDDED)
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            self.stdout.write("migrated, static files collected")
            if not no_seed:
                call_command("seed_demo")
            env = processes.child_environment()
            commands = {
                "web": processes.web_command(host=host, port=port),
                **processes.worker_pool_commands(),
                "stream-sequencer": processes.sequencer_command(),
                "beat": processes.beat_command(),
            }
            for name, command in commands.items():
                if self.stopping.is_set():
                    break
                children[name] = processes.start(command, env=env)
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
            processes.stop(list(children.values()), grace=GRACE_SECONDS)
            # The stack owns the embedded servers, also when it found them left running by a crash.
            if not os.environ.get("REDIS_URL"):
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
            self.stdout.write(f"{name:>17} | {line.decode(errors='replace').rstrip()}")
