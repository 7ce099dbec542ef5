"""The Celery app. Settings come from Django's, under the CELERY_ namespace."""

import logging
import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

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


@signals.worker_process_init.connect
def _warm_up(**kwargs: Any) -> None:
    # Each pool process, after the fork and before its first task (broker/warmup.py).
    from broker.warmup import warm_up

    warm_up()
