"""The warm-up leaves the process's start-up objects out of later garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from broker.warmup import gc_settle, warm_up


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite collects as it did


@pytest.mark.django_db
def test_warm_up_freezes_what_it_loaded(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    warm_up()
    # everything alive after the warm-up is frozen: the order flow's modules among them
    assert gc.get_freeze_count() > 10_000
    assert gc.get_count()[2] == 0


def test_after_the_freeze_a_collection_no_longer_walks_the_old_objects(unfrozen: None) -> None:
    # given a long-lived object, among those a full collection walks (gc.get_objects: generations 0-2)
    kept: list[object] = [[]]  # a container of a container: tracked by the collector
    assert any(candidate is kept for candidate in gc.get_objects())

    # when the process settles
    gc_settle()

    # then it is frozen: no collection walks it any more, while new objects are still collected
    assert not any(candidate is kept for candidate in gc.get_objects())
    fresh: list[object] = [[]]
    assert any(candidate is fresh for candidate in gc.get_objects())
