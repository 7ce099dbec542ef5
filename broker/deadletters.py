"""Dead letters: tasks that still failed after their retries, recorded so that nothing vanishes, and
handled by hand from the Operations screen.

The original system tried twice, then put the message on a dead-letter queue, told the admin, and the
order was handled by hand. Here Celery's `task_failure` signal (sent once a task has failed for good:
a retry in progress sends `task_retry` instead) records the call in `DeadLetter`, mails `ADMINS` once
per letter, and the staff screens show how many are open. Operations then retry the call (the same
idempotent task, with the same arguments, on the same queue), close it as handled with a note, or act
on what it concerns (for an order: cancel it, or route it again). Every step is a `DeadLetterAction`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from functools import partial
from typing import Any

from celery import signals
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.utils import timezone

from broker.exceptions import Conflict, ValidationFailed
from broker.models import OPEN_DEAD_LETTER_STATUSES, DeadLetter, DeadLetterAction, DeadLetterStatus

logger = logging.getLogger(__name__)

# Carried by a run sent again from a letter (celery puts custom headers on the task's request).
RETRY_HEADER = "dead_letter"
ERROR_LIMIT = 2_000
TRACEBACK_LIMIT = 20_000


def call_key(*, task_name: str, args: Any, kwargs: Any) -> str:
    """The identity of a call: one open letter per task and arguments."""
    text = json.dumps([task_name, args, kwargs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    """The task's arguments as JSON can hold them (they came as JSON through the broker in any case)."""
    return json.loads(json.dumps(value, default=str))


def _action(letter: DeadLetter, action: str, *, actor: str, note: str = "") -> DeadLetterAction:
    return DeadLetterAction.objects.create(letter=letter, action=action, actor=actor, note=note)


def open_count() -> int:
    """Letters open or being retried (the menu's badge: one indexed count, for Operations pages only)."""
    return DeadLetter.objects.filter(status__in=OPEN_DEAD_LETTER_STATUSES).count()


def dead_letter_record(
    *,
    task_name: str,
    task_id: str,
    args: Any,
    kwargs: Any,
    error: str,
    traceback: str,
    attempts: int,
    queue: str = "",
    subject_kind: str = "",
) -> DeadLetter:
    """Record a call that failed for good: a new letter, or the open one of the same call failing again.

    Idempotent for one delivery: the same `task_id` recorded twice (a redelivered failure report)
    counts once. A new letter is mailed to ADMINS after commit."""
    args, kwargs = _jsonable(list(args or [])), _jsonable(dict(kwargs or {}))
    key = call_key(task_name=task_name, args=args, kwargs=kwargs)
    now = timezone.now()
    subject_id = str(args[0]) if subject_kind and args else ""
    for _ in range(2):  # a concurrent first failure of the same call wins the insert: then update it
        try:
            with transaction.atomic():
                letter = (
                    DeadLetter.objects.select_for_update().filter(key=key, status__in=OPEN_DEAD_LETTER_STATUSES).first()
                )
                if letter is not None:
                    if letter.task_id == task_id:
                        return letter  # this very failure, reported again
                    letter.attempts += attempts
                    letter.failures += 1
                    letter.last_failed_at = now
                    letter.error, letter.traceback = error[:ERROR_LIMIT], traceback[:TRACEBACK_LIMIT]
                    letter.task_id = task_id
                    retried = letter.status == DeadLetterStatus.RETRYING
                    letter.status = DeadLetterStatus.OPEN
                    letter.save()
                    _action(letter, "Failed again after a retry" if retried else "Failed again", actor="worker",
                            note=error[:ERROR_LIMIT])  # fmt: skip
                    return letter
                letter = DeadLetter.objects.create(
                    task_name=task_name, args=args, kwargs=kwargs, key=key, queue=queue,
                    subject_kind=subject_kind, subject_id=subject_id, error=error[:ERROR_LIMIT],
                    traceback=traceback[:TRACEBACK_LIMIT], task_id=task_id, attempts=attempts,
                    first_failed_at=now, last_failed_at=now,
                )  # fmt: skip
                _action(letter, "Recorded", actor="worker", note=error[:ERROR_LIMIT])
                transaction.on_commit(partial(_notify, letter), robust=True)
                return letter
        except IntegrityError:
            continue
    raise RuntimeError(f"could not record the dead letter of {task_name}")


def _notify(letter: DeadLetter) -> None:
    mail_admins(
        subject=f"Task failed for good: {letter.task_name}",
        message=(
            f"{letter.task_name}{tuple(letter.args)} failed after {letter.attempts} attempt(s) and needs a "
            f"person: {letter.error}\n\nDead letter {letter.pk}: Operations > Dead letters.\n\n{letter.traceback}"
        ),
        fail_silently=True,
    )


def _locked(letter_id: int) -> DeadLetter:
    letter = DeadLetter.objects.select_for_update().filter(pk=letter_id).first()
    if letter is None:
        raise DeadLetter.DoesNotExist(f"No dead letter {letter_id}.")
    return letter


def dead_letter_retry(*, letter_id: int, actor: str) -> DeadLetter:
    """Send the same task again with the same arguments, on its queue (after commit). The letter waits
    as Retrying; the run completing resolves it, failing again reopens it. Only an open letter."""
    from broker.celery import app

    with transaction.atomic():
        letter = _locked(letter_id)
        if letter.status != DeadLetterStatus.OPEN:
            raise Conflict(f"Dead letter {letter.pk} is {letter.status}; only an open one can be retried.")
        letter.status = DeadLetterStatus.RETRYING
        letter.retry_task_id = str(uuid.uuid4())
        letter.save(update_fields=["status", "retry_task_id"])
        _action(letter, "Retried", actor=actor)
        # The header marks the run as this letter's retry: only such runs look for a letter to resolve.
        # No result is awaited (send_task by name would otherwise subscribe to it, as the tasks'
        # task_ignore_result spares their own apply_async).
        options: dict[str, Any] = {
            "task_id": letter.retry_task_id,
            "headers": {RETRY_HEADER: str(letter.pk)},
            "ignore_result": True,
        }
        if letter.queue:
            options["queue"] = letter.queue
        name, args, kwargs = letter.task_name, letter.args, letter.kwargs
        transaction.on_commit(lambda: app.send_task(name, args=args, kwargs=kwargs, **options))
    return letter


def dead_letter_close(*, letter_id: int, actor: str, note: str) -> DeadLetter:
    """Close a letter as handled by hand; the note says how. Closing it again is a no-op."""
    note = note.strip()
    if not note:
        raise ValidationFailed({"note": ["Say how it was handled."]})
    with transaction.atomic():
        letter = _locked(letter_id)
        if letter.status == DeadLetterStatus.HANDLED:
            return letter
        letter.status = DeadLetterStatus.HANDLED
        letter.save(update_fields=["status"])
        _action(letter, "Closed as handled", actor=actor, note=note)
    return letter


def dead_letter_note(*, letter_id: int, action: str, actor: str, note: str = "") -> DeadLetterAction:
    """Add a manual step taken on what the letter concerns (an order cancelled, routed again) to its history."""
    with transaction.atomic():
        return _action(_locked(letter_id), action, actor=actor, note=note)


def _resolve(task_id: str) -> None:
    with transaction.atomic():
        letter = (
            DeadLetter.objects.select_for_update()
            .filter(retry_task_id=task_id, status=DeadLetterStatus.RETRYING)
            .first()
        )
        if letter is None:
            return
        letter.status = DeadLetterStatus.RESOLVED
        letter.save(update_fields=["status"])
        _action(letter, "Completed after the retry", actor="worker")


# --- the worker's signals -------------------------------------------------------------------------------


@signals.task_failure.connect
def _on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **extra: Any,
) -> None:
    if sender is None or getattr(sender, "dead_letter", True) is False:
        return
    request = getattr(sender, "request", None)
    delivery = (getattr(request, "delivery_info", None) or {}) if request is not None else {}
    try:
        dead_letter_record(
            task_name=sender.name,
            task_id=task_id or "",
            args=args,
            kwargs=kwargs,
            error=f"{type(exception).__name__}: {exception}" if exception is not None else "unknown error",
            traceback=str(einfo.traceback) if einfo is not None else "",
            attempts=(getattr(request, "retries", 0) or 0) + 1,
            queue=str(delivery.get("routing_key") or ""),
            subject_kind=str(getattr(sender, "dead_letter_subject", "") or ""),
        )
    except Exception:  # never turn a failure report into a second failure; the log keeps it
        logger.exception("could not record the dead letter of %s[%s]", sender.name, task_id)


@signals.task_success.connect
def _on_task_success(sender: Any = None, **extra: Any) -> None:
    request = getattr(sender, "request", None)
    if request is None:
        return
    headers = getattr(request, "headers", None) or {}
    # Every other task returns here without a query: the order flow's tasks pay nothing for this.
    if getattr(request, RETRY_HEADER, None) is None and RETRY_HEADER not in headers:
        return
    try:
        _resolve(str(request.id))
    except Exception:
        logger.exception("could not resolve the dead letter of %s", request.id)
