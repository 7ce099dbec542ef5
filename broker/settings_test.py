"""Test settings: production settings on their own embedded servers and Redis database numbers.

With DATABASE_URL / REDIS_URL set (external services), the test database is `test_<name>` there, and
Redis databases 9-11 keep test queues and channel groups apart from a stack using the same server.
"""

import os
from pathlib import Path

# Own embedded Postgres and Redis under var/test: a test run never touches a `make run` stack's data.
os.environ.setdefault("BROKER_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))
os.environ.setdefault("REDIS_DB_BASE", "8")
# Tests must never reach Yahoo or any other host; market data comes from local fixtures.
os.environ.setdefault("BROKER_OFFLINE", "1")

from broker.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
