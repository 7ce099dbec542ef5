"""Running a whole transaction again when Postgres chose it as a deadlock or serialization victim.

The write paths take their row locks in one global order (orders/services.py), so a deadlock between
them should not happen; this is the last line of defence for what the order cannot cover (a lock
taken by something outside the services, an operator's SQL session). A request that still loses
after a few tries is a 503 with Retry-After, never a 500. So is a request that found no free database
connection within the pool's timeout (`is_overloaded`: the server is saturated).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection

from broker.exceptions import ApplicationError

logger = logging.getLogger(__name__)

# deadlock_detected, serialization_failure: the transaction was rolled back and may simply run again.
LOCK_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})

P = ParamSpec("P")
R = TypeVar("R")


class Busy(ApplicationError):
    """The database refused the transaction for a lock conflict several times in a row: try again soon."""

    status_code = 503
    retry_after = 1  # seconds, sent as the Retry-After header


class Overloaded(ApplicationError):
    """No database connection came free in time (the pool's timeout): the server is saturated."""

    status_code = 503
    retry_after = 1


OVERLOADED_MESSAGE = "The server is busy; try again in a moment."


def is_overloaded(error: BaseException | None) -> bool:
    """True for Django's OperationalError raised because the connection pool had no connection to give
    within its timeout: the request waited behind a backlog, and nothing of it was written."""
    from psycopg_pool import PoolTimeout

    return isinstance(error, OperationalError) and isinstance(error.__cause__, PoolTimeout)


def is_lock_conflict(error: BaseException) -> bool:
    """True for Django's OperationalError raised by a deadlock or a serialization failure."""
    return isinstance(error, OperationalError) and getattr(error.__cause__, "sqlstate", None) in LOCK_CONFLICT_SQLSTATES


def retry_on_lock_conflict(*, attempts: int = 3) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated service again (whole transaction) when it loses a deadlock or serialization
    conflict; after `attempts` losses raise Busy (503). Inside a caller's transaction nothing can be
    retried, so the error propagates unchanged."""

    def decorator(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in range(1, attempts + 1):
                try:
                    return function(*args, **kwargs)
                except OperationalError as error:
                    if not is_lock_conflict(error) or connection.in_atomic_block:
                        raise
                    logger.warning("%s lost a lock conflict (attempt %d): %s", function.__name__, attempt, error)
                    if attempt == attempts:
                        raise Busy("The records are busy; try again in a moment.") from error
                    # Jitter, so the two sides of a conflict do not meet again at the same instant.
                    time.sleep(random.uniform(0.01, 0.05) * attempt)
            raise AssertionError("unreachable")

        return wrapper

    return decorator
