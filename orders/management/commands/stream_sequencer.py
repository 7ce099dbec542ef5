"""`manage.py stream_sequencer`: number and publish the fill stream's events (orders/sequencer.py).

`make run` starts one; a second one waits on standby and leads if the first one goes. SIGTERM or
Ctrl-C ends it after the pass in progress.
"""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from orders.sequencer import Sequencer


class Command(BaseCommand):
    help = "Give committed fill stream events their eventIds and publish them (one leads at a time)."

    def handle(self, *args: Any, **options: Any) -> None:
        sequencer = Sequencer()

        def stop(signum: int, frame: Any) -> None:
            sequencer.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("stream sequencer started")
        sequencer.run()
        self.stdout.write("stream sequencer stopped")
