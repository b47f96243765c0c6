"""Django settings for Quantum Fleet, read from the environment.

Every value has a development default so ``make run`` works on a fresh checkout. With
``DJANGO_ENV=production`` the defaults that are only safe on a developer's machine are
refused at import time, so no process (web, worker, daemon) starts misconfigured.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from quantumfleet.environment import (
    DEVELOPMENT_JWT_SECRET,
    DEVELOPMENT_SECRET,
    Environment,
    cache_from_url,
    check_production_settings,
    database_from_url,
    parse_jwt_algorithm,
    parse_throttle_rate,
)

# Lets admin and generic classes be subscripted (ModelAdmin[Device]) at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is a convenience for development; real deployments set the environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = Environment.parse(env.str("DJANGO_ENV", default=Environment.DEVELOPMENT))
IS_PRODUCTION = DJANGO_ENV == Environment.PRODUCTION

DEBUG = env.bool("DEBUG", default=not IS_PRODUCTION and DJANGO_ENV != Environment.TEST)
SECRET_KEY = env.str("SECRET_KEY", default="" if IS_PRODUCTION else DEVELOPMENT_SECRET)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=[] if IS_PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"],
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# An origin list; "*" is accepted in development only (refused in production below).
CORS_ALLOWED_ORIGINS_RAW = env.list("CORS_ALLOWED_ORIGINS", default=[] if IS_PRODUCTION else ["*"])
CORS_ALLOW_ALL_ORIGINS = "*" in CORS_ALLOWED_ORIGINS_RAW
CORS_ALLOWED_ORIGINS = [origin for origin in CORS_ALLOWED_ORIGINS_RAW if origin != "*"]
CORS_EXPOSE_HEADERS = ["Link", "X-Total-Count"]
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "x-tenant-id",
    "x-requested-with",
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.accounts",
    "apps.tenants",
    "apps.devices",
    "apps.telemetry",
    "apps.connectors",
    "apps.dashboards",
    "apps.audit",
    "ingest_daemons",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.audit.middleware.RequestOriginMiddleware",
    # Last, so it sees a view's exception first: a database away is a 503, not a 500.
    "quantumfleet.api.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "quantumfleet.urls"
WSGI_APPLICATION = "quantumfleet.wsgi.application"
ASGI_APPLICATION = "quantumfleet.asgi.application"
# The seed's API has no trailing slashes (/devices, /devices/1); routers accept both forms.
APPEND_SLASH = False

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
            ],
        },
    },
]

# Database: no DATABASE_URL means the embedded SQLite file; a postgres:// URL means PostgreSQL.
DATABASE_URL = env.str("DATABASE_URL", default="")
DATABASES = {
    "default": database_from_url(
        DATABASE_URL,
        sqlite_path=BASE_DIR / "db.sqlite3",
        health_checks=env.bool("DB_CONN_HEALTH_CHECKS", default=False),
        prepared_statements=env.bool("DB_PREPARED_STATEMENTS", default=True),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("PASSWORD_MIN_LENGTH", default=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if DJANGO_ENV == Environment.TEST:
    # PBKDF2 at full strength makes every login in the suite cost ~0.3 s.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOW_REGISTRATION = env.bool("ALLOW_REGISTRATION", default=True)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The project's own static files: the vendored chart and map libraries of the admin.
STATICFILES_DIRS = [BASE_DIR / "quantumfleet" / "static"]
# Outside production, serve static files straight from the apps: no collectstatic step.
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
WHITENOISE_AUTOREFRESH = not IS_PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Telemetry storage. Partitions and retention apply on PostgreSQL; see apps.telemetry.partitions.
TELEMETRY_PARTITION_INTERVAL = env.str("TELEMETRY_PARTITION_INTERVAL", default="month")
if TELEMETRY_PARTITION_INTERVAL not in {"day", "week", "month"}:
    raise ImproperlyConfigured(
        f"TELEMETRY_PARTITION_INTERVAL={TELEMETRY_PARTITION_INTERVAL!r}: "
        "set it to day, week or month."
    )
TELEMETRY_PARTITIONS_AHEAD = env.int("TELEMETRY_PARTITIONS_AHEAD", default=3)
# Points per page of /telemetry/query, by default and at most.
TELEMETRY_QUERY_DEFAULT_LIMIT = env.int("TELEMETRY_QUERY_DEFAULT_LIMIT", default=100)
TELEMETRY_QUERY_MAX_LIMIT = env.int("TELEMETRY_QUERY_MAX_LIMIT", default=10_000)
# Largest data object of one point, serialised as JSON.
TELEMETRY_MAX_POINT_BYTES = env.int("TELEMETRY_MAX_POINT_BYTES", default=64 * 1024)
# Write the points of concurrent HTTP requests together (PostgreSQL): each request is
# still answered only after its own points are committed.
TELEMETRY_BATCH_WRITES = env.bool("TELEMETRY_BATCH_WRITES", default=DJANGO_ENV != Environment.TEST)
# How long the writer of a web worker waits for requests already being read, so that
# their points share its commit. A request alone is written at once.
TELEMETRY_BATCH_GATHER_MS = env.float("TELEMETRY_BATCH_GATHER_MS", default=4.0)
# Most points one HTTP request may carry.
TELEMETRY_MAX_BATCH_POINTS = env.int("TELEMETRY_MAX_BATCH_POINTS", default=10_000)
# Largest request body the API reads (413 above it).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("REQUEST_BODY_MAX_BYTES", default=5 * 1024 * 1024)
# Days of telemetry to keep; 0 keeps everything. Tenants can override it.
TELEMETRY_RETENTION_DAYS = env.int("TELEMETRY_RETENTION_DAYS", default=0)

# Network endpoints of the services, seed names kept.
API_HOST = env.str("API_HOST", default="127.0.0.1")
API_PORT = env.int("API_PORT", default=8000)
TCP_BIND = env.str("TCP_BIND", default="0.0.0.0")
TCP_PORT = env.int("TCP_PORT", default=5072)
# The Teltonika daemon (runteltonika). See docs/configuration.md for each.
TELTONIKA_UDP = env.bool("TELTONIKA_UDP", default=True)
TELTONIKA_MAX_CONNECTIONS = env.int("TELTONIKA_MAX_CONNECTIONS", default=20_000)
TELTONIKA_IDLE_TIMEOUT = env.float("TELTONIKA_IDLE_TIMEOUT", default=600.0)
TELTONIKA_HANDSHAKE_TIMEOUT = env.float("TELTONIKA_HANDSHAKE_TIMEOUT", default=30.0)
TELTONIKA_FRAME_TIMEOUT = env.float("TELTONIKA_FRAME_TIMEOUT", default=30.0)
TELTONIKA_MAX_FRAME_BYTES = env.int("TELTONIKA_MAX_FRAME_BYTES", default=16_384)
TELTONIKA_MAX_BAD_FRAMES = env.int("TELTONIKA_MAX_BAD_FRAMES", default=3)
TELTONIKA_BATCH_MAX_RECORDS = env.int("TELTONIKA_BATCH_MAX_RECORDS", default=5_000)
TELTONIKA_BATCH_MAX_DELAY_MS = env.float("TELTONIKA_BATCH_MAX_DELAY_MS", default=5.0)
TELTONIKA_AUTO_REGISTER_TENANT = env.str("TELTONIKA_AUTO_REGISTER_TENANT", default="")
TELTONIKA_METRICS_PORT = env.int("TELTONIKA_METRICS_PORT", default=0)
TELTONIKA_COMMAND_POLL_SECONDS = env.float("TELTONIKA_COMMAND_POLL_SECONDS", default=1.0)
TELTONIKA_SHARE_PORT = env.bool("TELTONIKA_SHARE_PORT", default=False)
# How long a sent command waits for the device's answer, and how long one waits to be sent.
DEVICE_COMMAND_ANSWER_TIMEOUT = env.int("DEVICE_COMMAND_ANSWER_TIMEOUT", default=60)
DEVICE_COMMAND_DEFAULT_TTL = env.int("DEVICE_COMMAND_DEFAULT_TTL", default=3600)
# Seconds without a sign of life after which Celery beat closes a session ("timeout").
DEVICE_SESSION_TIMEOUT = env.int("DEVICE_SESSION_TIMEOUT", default=1800)
USER_SESSION_TIMEOUT = env.int("USER_SESSION_TIMEOUT", default=3600)
EMQX_HOST = env.str("EMQX_HOST", default="127.0.0.1")
EMQX_PORT = env.int("EMQX_PORT", default=1883)
MQTT_USERNAME = env.str("MQTT_USERNAME", default="")
MQTT_PASSWORD = env.str("MQTT_PASSWORD", default="")
# The MQTT consumer (runmqtt). See docs/configuration.md for each.
MQTT_TLS = env.bool("MQTT_TLS", default=False)
MQTT_TLS_CA_FILE = env.str("MQTT_TLS_CA_FILE", default="")
MQTT_TLS_CERT_FILE = env.str("MQTT_TLS_CERT_FILE", default="")
MQTT_TLS_KEY_FILE = env.str("MQTT_TLS_KEY_FILE", default="")
MQTT_TOPIC = env.str("MQTT_TOPIC", default="ingest/+")
MQTT_SHARED_GROUP = env.str("MQTT_SHARED_GROUP", default="")
MQTT_CLIENT_ID = env.str("MQTT_CLIENT_ID", default="quantumfleet-ingest")
MQTT_PROTOCOL = env.str("MQTT_PROTOCOL", default="5")
if MQTT_PROTOCOL not in {"5", "3.1.1"}:
    raise ImproperlyConfigured(f"MQTT_PROTOCOL={MQTT_PROTOCOL!r}: set it to 5 or 3.1.1.")
MQTT_KEEPALIVE = env.int("MQTT_KEEPALIVE", default=30)
MQTT_SESSION_EXPIRY = env.int("MQTT_SESSION_EXPIRY", default=86_400)
MQTT_RECEIVE_MAXIMUM = env.int("MQTT_RECEIVE_MAXIMUM", default=10_000)
MQTT_BATCH_MAX_MESSAGES = env.int("MQTT_BATCH_MAX_MESSAGES", default=5_000)
MQTT_BATCH_MAX_DELAY_MS = env.float("MQTT_BATCH_MAX_DELAY_MS", default=5.0)
MQTT_DEAD_LETTER_TOPIC = env.str("MQTT_DEAD_LETTER_TOPIC", default="")
MQTT_METRICS_PORT = env.int("MQTT_METRICS_PORT", default=0)

REDIS_URL = env.str("REDIS_URL", default="")
# Login-failure counters and API throttles are kept here; every web process must share it,
# so it is Redis when REDIS_URL is set. Tests keep a cache of their own process.
CACHE_URL = env.str("CACHE_URL", default="" if DJANGO_ENV == Environment.TEST else REDIS_URL)
CACHES = {"default": cache_from_url(CACHE_URL)}

# Ingest limits and tenant quotas (apps.telemetry.limits); tenants may override each.
# 0 means no limit. Off in tests, whose tests of the limits turn them on.
INGEST_LIMITS_ENABLED = env.bool("INGEST_LIMITS_ENABLED", default=DJANGO_ENV != Environment.TEST)
INGEST_DEVICE_POINTS_PER_MINUTE = env.int("INGEST_DEVICE_POINTS_PER_MINUTE", default=6_000)
INGEST_TENANT_POINTS_PER_MINUTE = env.int("INGEST_TENANT_POINTS_PER_MINUTE", default=120_000)
TENANT_MAX_DEVICES = env.int("TENANT_MAX_DEVICES", default=0)
TENANT_MAX_STORED_POINTS = env.int("TENANT_MAX_STORED_POINTS", default=0)
# Shared rate counters; without Redis each process counts on its own.
INGEST_LIMITS_REDIS_URL = env.str("INGEST_LIMITS_REDIS_URL", default=REDIS_URL)
INGEST_LIMITS_KEY_PREFIX = env.str("INGEST_LIMITS_KEY_PREFIX", default="qf:ingest")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Without a broker, tasks run in the calling process (and always in tests): connectors work
# on a fresh checkout, and `make run` says that is how they run.
CELERY_TASK_ALWAYS_EAGER = env.bool(
    "CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL or DJANGO_ENV == Environment.TEST
)

# Connectors, webhooks, collector sources and rules. See docs/connectors.md for each.
CONNECTOR_MAX_ATTEMPTS = env.int("CONNECTOR_MAX_ATTEMPTS", default=5)
CONNECTOR_RETRY_BACKOFF_SECONDS = env.float("CONNECTOR_RETRY_BACKOFF_SECONDS", default=30.0)
CONNECTOR_RETRY_BACKOFF_MAX_SECONDS = env.float(
    "CONNECTOR_RETRY_BACKOFF_MAX_SECONDS", default=3600.0
)
CONNECTOR_ALLOWED_NETWORKS = env.list("CONNECTOR_ALLOWED_NETWORKS", default=[])
for _network in CONNECTOR_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"CONNECTOR_ALLOWED_NETWORKS: {_network!r} is not an address or network such as "
            "10.0.0.0/8; separate several with commas."
        ) from None
CONNECTOR_LOG_EXCERPT_CHARS = env.int("CONNECTOR_LOG_EXCERPT_CHARS", default=2000)
CONNECTOR_MAX_RESPONSE_BYTES = env.int("CONNECTOR_MAX_RESPONSE_BYTES", default=1024 * 1024)
CONNECTOR_POLL_TICK_SECONDS = env.int("CONNECTOR_POLL_TICK_SECONDS", default=10)
CONNECTOR_RULES_CACHE_SECONDS = env.float("CONNECTOR_RULES_CACHE_SECONDS", default=10.0)
# A call untouched this long is taken for lost by the broker and handed to a worker again.
CONNECTOR_STALLED_CALL_SECONDS = env.int("CONNECTOR_STALLED_CALL_SECONDS", default=900)

CELERY_BEAT_SCHEDULE = {
    "connectors-poll-collectors": {
        "task": "connectors.poll_collectors",
        "schedule": timedelta(seconds=CONNECTOR_POLL_TICK_SECONDS),
    },
    "telemetry-maintenance": {
        "task": "telemetry.maintain_partitions",
        "schedule": timedelta(hours=env.int("TELEMETRY_MAINTENANCE_HOURS", default=6)),
    },
    "connectors-requeue-stalled-calls": {
        "task": "connectors.requeue_stalled_calls",
        "schedule": timedelta(minutes=5),
    },
    "device-commands-expire": {
        "task": "devices.expire_commands",
        "schedule": timedelta(minutes=1),
    },
    "telemetry-sample-ingest-counts": {
        "task": "telemetry.sample_ingest_counts",
        "schedule": timedelta(minutes=1),
    },
    "audit-close-stale-sessions": {
        "task": "audit.close_stale_sessions",
        "schedule": timedelta(minutes=1),
    },
}

# Authentication: JWT for API clients, sessions for the admin and the browsable docs.
JWT_SECRET = env.str("JWT_SECRET", default="" if IS_PRODUCTION else DEVELOPMENT_JWT_SECRET)
JWT_ALG = parse_jwt_algorithm(env.str("JWT_ALG", default="HS256"))
JWT_EXPIRE_MINUTES = env.int(
    "JWT_EXPIRE_MINUTES", default=env.int("ACCESS_TOKEN_EXPIRE_MINUTES", default=60)
)
JWT_REFRESH_EXPIRE_DAYS = env.int("JWT_REFRESH_EXPIRE_DAYS", default=14)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=JWT_EXPIRE_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=JWT_REFRESH_EXPIRE_DAYS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": JWT_ALG,
    "SIGNING_KEY": JWT_SECRET,
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Every request reads the user: a deactivated or deleted user's token stops at once.
    "CHECK_USER_IS_ACTIVE": True,
}

# Brute-force protection of POST /auth/login. Failures are counted per account and client
# address, and per address alone, within a window; past a limit the login answers 429.
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_ADDRESS = env.int("LOGIN_FAILURES_PER_ADDRESS", default=50)
# How many refused logins naming no known account are written to the audit trail per
# window, over all addresses; the others are counted, not written.
LOGIN_UNKNOWN_ACCOUNT_EVENTS = env.int("LOGIN_UNKNOWN_ACCOUNT_EVENTS", default=200)
# Proxies in front of the web service that append the client's address to
# X-Forwarded-For; 0 trusts none and uses the connection's address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# Request rates of the API, per user (authenticated routes) and per client address (the
# public /auth routes). Device ingest is never throttled here.
API_THROTTLE_RATES = {
    "user": parse_throttle_rate(
        "API_USER_THROTTLE_RATE", env.str("API_USER_THROTTLE_RATE", default="1200/minute")
    ),
    "auth": parse_throttle_rate(
        "API_AUTH_THROTTLE_RATE", env.str("API_AUTH_THROTTLE_RATE", default="60/minute")
    ),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "quantumfleet.api.pagination.LinkHeaderPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_PARSER_CLASSES": [
        "quantumfleet.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "quantumfleet.api.schema.AppTaggedAutoSchema",
    "EXCEPTION_HANDLER": "quantumfleet.api.errors.json_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["quantumfleet.api.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": API_THROTTLE_RATES,
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Quantum Fleet API",
    "DESCRIPTION": (
        "Multi-tenant vehicle and IoT telemetry. Authenticate with `POST /auth/login` and "
        "send `Authorization: Bearer <access_token>`. Tenant-scoped routes without a "
        "`{tenant_id}` in the path take the tenant from the `X-Tenant-Id` header, or use "
        "the caller's only tenant when the header is absent. Lists return a JSON array; "
        "paging is in the `Link` and `X-Total-Count` headers."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "apps.tenants.models.Role",
        "DeviceProtocolEnum": "apps.devices.models.DeviceProtocol",
        "CommandStatusEnum": "apps.devices.models.CommandStatus",
        "ConnectorKindEnum": "apps.connectors.models.ConnectorKind",
        "ConnectorDirectionEnum": "apps.connectors.models.Direction",
        "RuleOperatorEnum": "apps.connectors.models.RuleOperator",
        "HealthStatusEnum": ["ok", "error"],
    },
    "APPEND_COMPONENTS": {
        "schemas": {
            "TimedPoint": {
                "type": "object",
                "required": ["ts", "data"],
                "properties": {
                    "ts": {"type": "string", "format": "date-time"},
                    "data": {"type": "object", "additionalProperties": True},
                },
            }
        }
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "quantumfleet.api.schema.drop_optional_trailing_slash",
        "quantumfleet.api.schema.add_error_responses",
    ],
    "TAGS": [
        {"name": "accounts", "description": "Login, tokens and registration."},
        {"name": "tenants", "description": "Tenants and the roles of their users."},
        {"name": "devices", "description": "Devices of a tenant and their ingest tokens."},
        {"name": "telemetry", "description": "Ingest, queries, latest state and exports."},
        {"name": "connectors", "description": "Outbound connectors, webhooks, collectors, rules."},
        {"name": "dashboards", "description": "Dashboards, their panels and saved queries."},
        {"name": "audit", "description": "Audit events, device and user sessions."},
        {"name": "system", "description": "Health of the service."},
    ],
}

# Security headers that only make sense behind TLS are switched on in production.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("TRUST_X_FORWARDED_PROTO", default=False)
    else None
)
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Development-only bootstrap (make run): the seed's documented login and a demo device.
DEMO_ADMIN_EMAIL = env.str("DEMO_ADMIN_EMAIL", default="admin@example.com")
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="Admin123!")
DEMO_DEVICE_TOKEN = env.str("DEMO_DEVICE_TOKEN", default="demo-device-token-0123456789")

# The operators' pages of the admin (fleet overview, device page). See docs/admin.md.
# A device is online when its latest point arrived within this many seconds.
ADMIN_ONLINE_WINDOW_SECONDS = env.int("ADMIN_ONLINE_WINDOW_SECONDS", default=300)
# Map tiles under the device track ({z}/{x}/{y} URL template); empty draws the track alone.
ADMIN_MAP_TILE_URL = env.str(
    "ADMIN_MAP_TILE_URL", default="https://tile.openstreetmap.org/{z}/{x}/{y}.png"
)
ADMIN_MAP_TILE_ATTRIBUTION = env.str(
    "ADMIN_MAP_TILE_ATTRIBUTION", default="&copy; OpenStreetMap contributors"
)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "json" for log collectors, "text" for people; JSON by default in production.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_PRODUCTION else "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: set LOG_FORMAT to text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "quantumfleet.logging.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "filters": {"mask_secret_paths": {"()": "quantumfleet.logging.MaskSecretPaths"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Refused requests are logged with their path, which for webhooks holds the token.
    "loggers": {"django.request": {"filters": ["mask_secret_paths"]}},
}

check_production_settings(
    environment=DJANGO_ENV,
    secret_key=SECRET_KEY,
    jwt_secret=JWT_SECRET,
    debug=DEBUG,
    cors_origins=CORS_ALLOWED_ORIGINS_RAW,
    allowed_hosts=ALLOWED_HOSTS,
)
