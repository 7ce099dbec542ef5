"""Settings, all from the environment (12-factor). See README.md "Configuration" for every variable."""

from __future__ import annotations

import os
import re
import secrets
from decimal import Decimal
from pathlib import Path

import dj_database_url
from kombu import Queue

from broker import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


VAR_DIR = Path(os.environ.get("BROKER_VAR_DIR", BASE_DIR / "var")).resolve()
EMBEDDED = embedded.EmbeddedPaths(VAR_DIR)


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    # A per-checkout key kept in var/, so sessions survive restarts without a key in git.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [f"http://{host}:8000" for host in ALLOWED_HOSTS]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "django_htmx",
    "broker",
    "pools",
    "orders",
    "settlement",
    "reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "broker.middleware.StaticFilesMiddleware",  # whitenoise, async-capable (broker/middleware.py)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "broker.middleware.RejectNullCharactersMiddleware",
]

ROOT_URLCONF = "broker.urls"
ASGI_APPLICATION = "broker.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "broker.context_processors.dead_letters",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# DATABASE_URL wins; otherwise the embedded Postgres under var/ is started (or attached to) here,
# before Django reads DATABASES, which is the one place every entry point passes through.
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded.start_postgres(EMBEDDED)
# A psycopg connection pool per process, not persistent connections: under ASGI every request runs
# in its own thread, so a thread-local persistent connection would be opened per request and never
# reused, until Postgres runs out of connections. The pool hands the same few connections around.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"]["pool"] = {
    "min_size": 1,
    "max_size": env_int("DATABASE_POOL_MAX_SIZE", 8),
    "timeout": 10,
}
# Parameters bound by the server, and a statement run a fifth time on a connection prepared there (the
# pool keeps connections, so the order flow's statements are planned once per connection). Django's
# defaults (client-side binding, no preparing) suit a transaction-pooling proxy, which this does not
# use; measured on the order flow, planning was 55% of Postgres's time in its statements.
DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
_prepare_threshold = os.environ.get("DATABASE_PREPARE_THRESHOLD", "5").strip().lower()
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = (
    None if _prepare_threshold in ("", "off", "none") else int(_prepare_threshold)
)
DATABASES["default"].setdefault("TEST", {})
if test_name := os.environ.get("BROKER_TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"]["NAME"] = test_name

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and the Channels layer -----------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or embedded.redis_url(EMBEDDED)


def _celery_url(redis_url: str, db: int) -> str:
    # Celery (kombu) spells a unix socket `redis+socket://`; redis-py and channels-redis `unix://`.
    if redis_url.startswith("unix://"):
        return f"redis+socket://{redis_url.removeprefix('unix://').split('?')[0]}?virtual_host={db}"
    base = redis_url.rstrip("/")
    if base.count("/") > 2:  # a database number is already given: replace it
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}"


def _channels_host(redis_url: str, db: int) -> str:
    if redis_url.startswith("unix://"):
        return f"{redis_url.split('?')[0]}?db={db}"
    base = redis_url.rstrip("/")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}"


# Separate Redis databases so a test run or a second stack can be given its own numbers.
REDIS_DB_BASE = env_int("REDIS_DB_BASE", 0)
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or _celery_url(REDIS_URL, REDIS_DB_BASE + 1)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or _celery_url(REDIS_URL, REDIS_DB_BASE + 2)
# How long a Redis read of the channel layer may wait before the connection counts as dead. (redis-py 8's
# default is 5 s; the list-based core layer used until 2026-12-05 blocked 5 s per read, so it closed every
# quiet socket with 1011 - channels_redis#422, redis-py#4091. The pub/sub layer reads with a 0.1 s poll.)
CHANNEL_LAYER_SOCKET_TIMEOUT = env_int("CHANNEL_LAYER_SOCKET_TIMEOUT", 15)
# Redis pub/sub, not channels-redis' list-based core layer: a group send is one PUBLISH (the core layer
# took four round trips per group: prune, read the members, prune each channel, then a script), and
# each process receives on one subscribed connection instead of a blocking pop per consumer. Pub/sub
# delivers only to whoever is subscribed at that moment; the fill stream, the layer's only user, numbers
# its messages and reads anything missed from its table (docs/architecture.md, "The fill stream").
# Channels are global to a Redis server (not per database), so the prefix carries the database number
# that isolated stacks sharing one Redis before.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": _channels_host(REDIS_URL, REDIS_DB_BASE + 3),
                    "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                }
            ],
            "prefix": f"asgi.db{REDIS_DB_BASE + 3}.",
        },
    }
}
# Django's cache holds the API throttles' counts (broker/api/throttling.py): in Redis, in a database of
# its own, so every web process counts against the same limits.
CACHES = {
    "default": {
        "BACKEND": "broker.cache.RedisCache",  # Django's, keeping its redis-py clients
        "LOCATION": _channels_host(REDIS_URL, REDIS_DB_BASE + 4),  # redis-py's URL forms, as channels-redis
        "KEY_PREFIX": "broker",
        # Short: a hung Redis must not hang API requests (the throttle then lets them through).
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}

# --- Mail -----------------------------------------------------------------------------------------
# Who hears of a task that failed for good (broker/deadletters.py): "Name <address>" entries, comma-
# separated. The console backend prints the mail in `make run`'s output; set EMAIL_BACKEND (and
# Django's EMAIL_HOST etc.) to send it for real.
ADMINS = [
    (entry.split("<")[0].strip() or entry, entry.split("<")[-1].rstrip(">").strip())
    for entry in os.environ.get("BROKER_ADMINS", "Operations <operations@localhost>").split(",")
    if entry.strip()
]
SERVER_EMAIL = os.environ.get("SERVER_EMAIL", "broker@localhost")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

# --- Celery -------------------------------------------------------------------------------------
# At-least-once delivery: a task is acknowledged after it ran, and re-delivered when its worker dies.
# Every task is therefore idempotent (see orders/tasks.py).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's blocking reads are not hit by redis-py 8's 5 s default read timeout (see CHANNEL_LAYERS):
# kombu passes its own socket_timeout (None unless set here) to redis-py explicitly, its BRPOP blocks
# for only 1 s and the worker's event loop reads it without a socket timeout; the result backend passes
# Celery's redis_socket_timeout (120 s) and is read only by the market-data chord's counter, never by a
# blocking get. Any socket_timeout added here must stay above kombu's brpop_timeout.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = 120
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = "orders"
BROKER_QUEUES = ("orders", "lit", "dark", "settlement", "marketdata", "reporting")
CELERY_TASK_QUEUES = [Queue(name) for name in BROKER_QUEUES]
# Venue tasks are sent to `lit` or `dark` explicitly, per child, by the order service.
CELERY_TASK_ROUTES = {
    "orders.route_order": {"queue": "orders"},
    "orders.sweep": {"queue": "orders"},
    "orders.expire_day_orders": {"queue": "orders"},
    "orders.settle_trades": {"queue": "settlement"},
    "orders.prune_stream_events": {"queue": "settlement"},
    "orders.settle_pending": {"queue": "settlement"},
    "orders.settle_due": {"queue": "settlement"},
    "reporting.reconcile": {"queue": "reporting"},
    "reporting.aggregate_nightly": {"queue": "reporting"},
    "reporting.reaggregate_from": {"queue": "reporting"},
    "marketdata.*": {"queue": "marketdata"},
}
# Publishing must not hang an HTTP request when the broker is down; the sweeper re-drives the order.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}

# --- Request size -------------------------------------------------------------------------------
# A request body held in memory (forms, and the API's JSON: broker.api.parsers applies it before
# reading) is at most DATA_UPLOAD_MAX_MEMORY_SIZE (Django's default 2.5 MB, settable here); an
# uploaded file at most FILE_UPLOAD_MAX_BYTES, stopped while it arrives (broker.uploads).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
FILE_UPLOAD_MAX_BYTES = env_int("FILE_UPLOAD_MAX_BYTES", 5 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "broker.uploads.BoundedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Auth and API -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Staff screens log in on their own page; the admin keeps /admin/login/.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "orders:blotter"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["broker.api.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "broker.api.pagination.PageNumberPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "broker.api.exceptions.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["broker.api.throttling.ScopedUserThrottle"],
}


def _throttle_rate(name: str, default: str) -> str:
    rate = os.environ.get(name, default).strip()
    if not re.fullmatch(r"[1-9][0-9]*/(s|second|min|minute|h|hour|day)", rate):
        raise ValueError(f"{name} is '<requests>/<s|min|h|day>', e.g. 6000/min; not {rate!r}")
    return rate


# API throttles per user (a token is a user) and scope: order entry and cancel, market-data jobs,
# everything else; over the rate an API request gets 429 with Retry-After. Generous by default: the
# benchmark sends up to ~800 orders/s from a few tokens and must never be throttled.
API_THROTTLE_RATES = {
    "orders": _throttle_rate("API_THROTTLE_ORDERS", "60000/min"),
    "market-data": _throttle_rate("API_THROTTLE_MARKET_DATA", "600/min"),
    "default": _throttle_rate("API_THROTTLE_DEFAULT", "60000/min"),
}
API_THROTTLE_CACHE = "default"
SPECTACULAR_SETTINGS = {
    "TITLE": "Broker back office API",
    "DESCRIPTION": "Order entry, trades and the live fill stream of the broker back office.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Only /api/health is public; the schema and its UI need a token or a staff session like the rest.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI assets from the sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The error responses every operation can give (401/403/404/400/413/415/429/503), documented once.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "broker.api.schema.document_errors",
    ],
}

# --- Trading ------------------------------------------------------------------------------------
MAX_CHILD_QUANTITY = env_int("MAX_CHILD_QUANTITY", 1000)
MAX_ORDER_QUANTITY = env_int("MAX_ORDER_QUANTITY", 1_000_000)
# Orders at least this large try the dark pools first (when the NBBO midpoint is inside the limit).
DARK_MIN_ORDER_QUANTITY = env_int("DARK_MIN_ORDER_QUANTITY", 2000)
# Simulated liquidity providers: same seed, same books, so a demo or a test is reproducible.
LIQUIDITY_SEED = env_int("LIQUIDITY_SEED", 20240308)
# Orders left in New / children left unsent longer than this are re-driven by the sweeper. An item it
# re-sent is sent again only if still stuck after the same wait, then after twice that, four times ...
# never waiting longer than SWEEP_BACKOFF_MAX_SECONDS: a backlog is not multiplied by the sweeper.
SWEEP_AFTER_SECONDS = env_int("SWEEP_AFTER_SECONDS", 10)
SWEEP_BACKOFF_MAX_SECONDS = env_int("SWEEP_BACKOFF_MAX_SECONDS", 60)
# Bulk batches quiet in Validating or Booking this long are resumed by the sweeper (their task was lost
# or killed); after BULK_MAX_ATTEMPTS resumes that did not finish, the batch ends Failed with a reason.
BULK_SWEEP_AFTER_SECONDS = env_int("BULK_SWEEP_AFTER_SECONDS", 120)
BULK_MAX_ATTEMPTS = env_int("BULK_MAX_ATTEMPTS", 3)
# When trades settle: "T+0" right after the trade (the simulation's default) or "T+1" XNYS business day.
# The fill stream's events (orders.StreamEvent) are kept this long for `?since=` replays (at least 24 h;
# pruned hourly by beat), and an idle subscriber gets a heartbeat this often.
STREAM_EVENTS_KEEP_HOURS = max(24.0, float(os.environ.get("STREAM_EVENTS_KEEP_HOURS", "48")))
STREAM_HEARTBEAT_SECONDS = float(os.environ.get("STREAM_HEARTBEAT_SECONDS", "15"))
# Account activities are listed up to this long before the oldest open transaction began
# (orders/activities.py): the most a movement's time may precede its transaction's first statement.
ACTIVITY_HORIZON_SECONDS = float(os.environ.get("ACTIVITY_HORIZON_SECONDS", "1"))
# The stream's sequencer (orders/sequencer.py) passes at least this often, woken or not: the most a
# lost wake delays the stream.
STREAM_SEQUENCER_POLL_SECONDS = float(os.environ.get("STREAM_SEQUENCER_POLL_SECONDS", "1"))

SETTLEMENT_CYCLE = os.environ.get("SETTLEMENT_CYCLE", "T+0").upper()
if SETTLEMENT_CYCLE not in ("T+0", "T+1"):
    raise ValueError(f"SETTLEMENT_CYCLE must be T+0 or T+1, not {SETTLEMENT_CYCLE!r}")
# Empty: the simulated market is open around the clock. "XNYS": Day orders expire at the NYSE close.
MARKET_CALENDAR = os.environ.get("MARKET_CALENDAR", "")
TRADE_FEE_PLACES = Decimal("0.01")
# Market orders may trade at most this fraction away from the reference price (market order
# protection); a Market buy reserves cash at that price.
MARKET_ORDER_COLLAR = Decimal(os.environ.get("MARKET_ORDER_COLLAR", "0.05"))

# --- I18N, static ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # The staff screens' chart library, installed from the npm registry by `make install` (package.json).
    ("vendor/lightweight-charts", BASE_DIR / "node_modules" / "lightweight-charts" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"pgserver": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}

# --- Market data ------------------------------------------------------------------------------------
# `yahoo` (yfinance) or `snapshot` (the real daily prices shipped in broker/data, never the network).
MARKET_DATA_PROVIDER = os.environ.get("MARKET_DATA_PROVIDER", "yahoo")
if MARKET_DATA_PROVIDER not in ("yahoo", "snapshot"):
    raise ValueError(f"MARKET_DATA_PROVIDER must be yahoo or snapshot, not {MARKET_DATA_PROVIDER!r}")
# Send every Yahoo request through this base URL as `<gateway>/<host>/<path>` (an egress or recording proxy).
YAHOO_GATEWAY_URL = os.environ.get("YAHOO_GATEWAY_URL", "")
# Set by the test settings: without a gateway, Yahoo requests fail at once instead of reaching the internet.
BROKER_OFFLINE = env_bool("BROKER_OFFLINE", False)
MARKET_DATA_TIMEOUT = float(os.environ.get("MARKET_DATA_TIMEOUT", "10"))
# Tries of one job's fetch of one ticker (the first included), with exponential backoff between them.
MARKET_DATA_MAX_ATTEMPTS = env_int("MARKET_DATA_MAX_ATTEMPTS", 4)
MARKET_DATA_RETRY_BACKOFF = float(os.environ.get("MARKET_DATA_RETRY_BACKOFF", "2"))
# A quote older than this is stale: an order for the ticker asks for a fresh one (never waiting for it).
MARKET_DATA_STALE_AFTER = env_int("MARKET_DATA_STALE_AFTER", 900)
# How far back the first history fetch of a ticker goes; later fetches start a week before the last bar.
MARKET_DATA_HISTORY_DAYS = env_int("MARKET_DATA_HISTORY_DAYS", 400)
