"""Test settings: the same as production settings, on their own Redis database numbers.

The test database is `test_<name>` on the same (embedded or configured) Postgres. Redis databases
9-11 keep test queues and channel groups apart from a `make run` stack on the same machine.
"""

import os

os.environ.setdefault("REDIS_DB_BASE", "8")
# Tests must never reach Yahoo or any other host; market data comes from local fixtures.
os.environ.setdefault("BROKER_OFFLINE", "1")

from broker.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
