"""Settings for mypy's Django plugin: imports everything, starts nothing.

mypy ends with os._exit, so no exit hook would stop an embedded Postgres it started; a dummy
DATABASE_URL (never connected to) keeps the type check free of side effects.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://typecheck@127.0.0.1:1/typecheck")

from broker.settings import *  # noqa: F403
