"""The Celery app. Settings come from Django's, under the CELERY_ namespace."""

import logging
import os
from typing import Any

from celery import Celery, signals

from broker import kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
kombu_redis.install()  # one redis-py client per kombu channel (broker/kombu_redis.py)

app = Celery("broker")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the database connection (here: the process's pool) around every task
# unless told to reuse it; reconnecting per task would cost more than many of our tasks do.
app.conf["CELERY_DB_REUSE_MAX"] = 1000
app.autodiscover_tasks()


# Tasks beat sends every few seconds: their "sent / received / succeeded" lines would bury everything
# else in the console of `make run`. They log a warning of their own when they find work.
QUIET_TASKS = frozenset({"orders.sweep"})


class QuietHousekeeping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        args = record.args
        values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else ()
        return not any(isinstance(value, str) and value in QUIET_TASKS for value in values)


@signals.after_setup_logger.connect
def _quiet_housekeeping(logger: logging.Logger, **kwargs: Any) -> None:
    for handler in logger.handlers:
        handler.addFilter(QuietHousekeeping())


@signals.worker_init.connect
def _warm_up_pool_processes(sender: Any = None, **kwargs: Any) -> None:
    # Each pool process warms up after the fork and before its first task (broker/warmup.py), and
    # after Celery's Django fixup has closed what the fork inherited, the database pool included: its
    # handler is connected when the worker starts (at this same signal, by a receiver connected when
    # the app was made, so before this one), and receivers run in the order they were connected.
    # Connected at import instead, the warm-up ran first and the fixup then closed the pool it had
    # opened: the first task opened a new connection, to a Postgres backend that had run nothing yet.
    signals.worker_process_init.connect(_warm_up, weak=False, dispatch_uid="broker.warm_up")
    # What the pool processes rehearse of the order flow (broker.warmup.REHEARSAL), by the queues this
    # worker consumes; set before the fork, so every pool process inherits it.
    from broker import warmup

    warmup.REHEARSAL = rehearsal_part(_consumed_queues(sender))


def _consumed_queues(worker: Any) -> set[str]:
    try:
        return set(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
    except AttributeError:  # not a worker we know the shape of: rehearse nothing
        return set()


def rehearsal_part(queues: set[str]) -> int | None:
    """How far a worker consuming `queues` rehearses the order flow at start (orders.rehearsal.Part)."""
    from orders.rehearsal import Part

    if queues & {"orders", "lit", "dark"}:
        return Part.MATCH
    return None


def _warm_up(**kwargs: Any) -> None:
    from broker.warmup import warm_up

    warm_up()
