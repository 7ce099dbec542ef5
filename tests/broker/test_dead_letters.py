"""Dead letters in-process: a task that fails for good lands once (not once per retry), the same call
failing again counts on its letter, and closing keeps the history. The worker's own path (a real task
failing, then retried after its cause is removed) is tests/integration/test_dead_letters.py."""

from __future__ import annotations

from typing import Any

import pytest
from celery import shared_task
from django.core import mail
from django.db import OperationalError
from django.test import Client

from broker import deadletters
from broker.exceptions import Conflict, ValidationFailed
from broker.models import DeadLetter, DeadLetterStatus
from orders import roles
from orders.tasks import concerns
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db

RUNS: list[int] = []


@shared_task(name="tests.always_unreachable", autoretry_for=(OperationalError,), max_retries=2, **concerns("order"))
def always_unreachable(order_id: int) -> None:
    RUNS.append(order_id)
    raise OperationalError("could not connect to the venue gateway")


@shared_task(name="tests.always_broken")
def always_broken(batch_id: int) -> None:
    raise ValueError(f"batch {batch_id} has no rows")


def _history(letter: DeadLetter) -> list[str]:
    return list(letter.actions.values_list("action", flat=True))


def test_a_task_failing_after_its_retries_lands_once(django_capture_on_commit_callbacks: Any) -> None:
    RUNS.clear()
    # when a task that retries twice fails every time (eager: its retries run in place)
    with django_capture_on_commit_callbacks(execute=True):
        result = always_unreachable.apply(args=(41,))

    # then it ran three times and left one letter, not one per retry
    assert result.failed()
    assert RUNS == [41, 41, 41]
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.args, letter.attempts, letter.failures) == ("tests.always_unreachable", [41], 3, 1)
    assert (letter.subject_kind, letter.subject_id, letter.status) == ("order", "41", DeadLetterStatus.OPEN)
    assert letter.error == "OperationalError: could not connect to the venue gateway"
    assert "always_unreachable" in letter.traceback
    assert _history(letter) == ["Recorded"]
    # and the admins heard of it once
    assert len(mail.outbox) == 1
    assert "tests.always_unreachable" in mail.outbox[0].subject
    assert deadletters.open_count() == 1


def test_the_same_call_failing_again_counts_on_its_open_letter() -> None:
    always_broken.apply(args=(7,))
    always_broken.apply(args=(7,))
    always_broken.apply(args=(8,))  # another call: its own letter

    seven = DeadLetter.objects.get(args=[7])
    assert (seven.failures, seven.attempts, seven.subject_kind) == (2, 2, "")
    assert _history(seven) == ["Recorded", "Failed again"]
    assert DeadLetter.objects.count() == 2


def test_a_failure_reported_twice_counts_once() -> None:
    fields: dict[str, Any] = {
        "task_name": "tests.x", "task_id": "delivery-1", "args": [1], "kwargs": {}, "error": "boom",
        "traceback": "", "attempts": 1,
    }  # fmt: skip
    deadletters.dead_letter_record(**fields)
    deadletters.dead_letter_record(**fields)
    assert DeadLetter.objects.get().failures == 1


def test_closing_needs_a_note_keeps_the_history_and_a_new_failure_opens_a_new_letter() -> None:
    always_broken.apply(args=(9,))
    letter = DeadLetter.objects.get()
    with pytest.raises(ValidationFailed):
        deadletters.dead_letter_close(letter_id=letter.pk, actor="ops", note="  ")

    deadletters.dead_letter_close(letter_id=letter.pk, actor="ops", note="batch re-uploaded by the desk")
    deadletters.dead_letter_close(letter_id=letter.pk, actor="ops", note="again")  # a no-op

    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.HANDLED
    assert list(letter.actions.values_list("action", "actor", "note")) == [
        ("Recorded", "worker", "ValueError: batch 9 has no rows"),
        ("Closed as handled", "ops", "batch re-uploaded by the desk"),
    ]
    with pytest.raises(Conflict):
        deadletters.dead_letter_retry(letter_id=letter.pk, actor="ops")
    # the same call failing after it was handled is news: a letter of its own
    always_broken.apply(args=(9,))
    assert DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count() == 1
    assert DeadLetter.objects.count() == 2


def test_operations_see_the_letters_and_the_badge_and_traders_are_refused() -> None:
    always_broken.apply(args=(5,))
    letter = DeadLetter.objects.get()
    staff_user("ops", roles.OPERATIONS)
    staff_user("trader", roles.TRADER)
    ops, trader = Client(), Client()
    assert ops.login(username="ops", password=PASSWORD)
    assert trader.login(username="trader", password=PASSWORD)

    html = ops.get("/operations/dead-letters/").content.decode()
    assert f'<tr data-letter="{letter.pk}">' in html
    assert 'id="dead-letter-badge" title="1 open">1</span>' in html
    detail = ops.get(f"/operations/dead-letters/{letter.pk}/").content.decode()
    assert "ValueError: batch 5 has no rows" in detail
    assert 'id="retry-button"' in detail

    # closing without a note says what is missing; with one, the letter is handled and the badge gone
    response = ops.post(f"/operations/dead-letters/{letter.pk}/", {"action": "close", "note": ""})
    assert "Say how it was handled." in response.content.decode()
    response = ops.post(
        f"/operations/dead-letters/{letter.pk}/", {"action": "close", "note": "re-sent by hand"}, follow=True
    )
    assert 'id="letter-status">Handled</span>' in response.content.decode()
    assert "dead-letter-badge" not in ops.get("/operations/dead-letters/?status=all").content.decode()

    for path in ("/operations/dead-letters/", f"/operations/dead-letters/{letter.pk}/"):
        response = trader.get(path)
        assert response.status_code == 403
        assert "broker.handle_dead_letters" in response.content.decode()


def test_the_list_filters_by_task_and_ignores_what_is_no_task() -> None:
    always_broken.apply(args=(1,))
    deadletters.dead_letter_record(
        task_name="tests.x", task_id="d", args=[2], kwargs={}, error="boom", traceback="", attempts=1
    )
    staff_user("ops", roles.OPERATIONS)
    ops = Client()
    assert ops.login(username="ops", password=PASSWORD)

    filtered = ops.get("/operations/dead-letters/?task=tests.x").content.decode()
    assert filtered.count("<tr data-letter=") == 1
    for query in ("?task=no.such.task&status=bogus", "?task=" + "x" * 5000):
        response = ops.get("/operations/dead-letters/" + query)
        assert response.status_code == 200
        assert response.content.decode().count("<tr data-letter=") == 2
    # a NUL byte is refused before any view (broker's middleware), as everywhere
    assert ops.get("/operations/dead-letters/?task=a%00b").status_code == 400
    assert ops.get("/operations/dead-letters/999999/").status_code == 404
