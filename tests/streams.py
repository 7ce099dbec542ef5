"""The fill stream's sequencer in tests: the real one (orders/sequencer.py), in a thread of the test
process for the in-process tests (`sequencer`, a fixture registered in tests/conftest.py), or one pass
in the test's own thread and transaction (`sequence_now`). The stack tests run it as its own process,
as `make run` does."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from orders.models import StreamEvent
from orders.sequencer import Sequencer, wake
from tests.stack import wait_for

# A guard against hanging the suite if the thread never ends, not a timing assertion.
JOIN_SECONDS = 15


@pytest.fixture
def sequencer(transactional_db: None) -> Iterator[Sequencer]:
    """A leading sequencer in a thread of its own, with its own database connection, for the test."""
    running = Sequencer()
    thread = threading.Thread(target=running.run, name="stream-sequencer", daemon=True)
    thread.start()
    wait_for(lambda: running.leading, "the test's sequencer leading")
    yield running
    running.stop.set()
    wake()  # out of its wait at once
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive(), "the sequencer thread did not stop"


def sequence_now() -> int:
    """Number and publish what is waiting, in this thread (and so in a non-transactional test's own
    transaction); the number of events."""
    once = Sequencer()
    try:
        return once.run_pass()
    finally:
        once.loop.close()


def all_numbered() -> bool:
    return not StreamEvent.objects.filter(event_id__isnull=True).exists()
