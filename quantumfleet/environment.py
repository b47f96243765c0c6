"""Typed helpers for settings that come from the environment.

They turn environment strings into settings and refuse, with a message that says which
variable to set, the combinations that must never reach production.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

# Publicly known values: fine on a laptop, refused in production.
DEVELOPMENT_SECRET = "dev-insecure-secret-key-change-me-0000000000000000000000000"  # noqa: S105
DEVELOPMENT_JWT_SECRET = "dev-insecure-jwt-secret-change-me-000000000000000000000000"  # noqa: S105
MINIMUM_SECRET_LENGTH = 32
# Algorithms that sign with the shared JWT_SECRET; key-pair algorithms need key files.
SUPPORTED_JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
# Runs of one statement on a connection before psycopg prepares it (psycopg's default).
PREPARE_THRESHOLD = 5


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"

    @classmethod
    def parse(cls, value: str) -> Environment:
        aliases = {"dev": cls.DEVELOPMENT, "prod": cls.PRODUCTION}
        normalized = value.strip().lower()
        if normalized in aliases:
            return aliases[normalized]
        try:
            return cls(normalized)
        except ValueError:
            choices = ", ".join(member.value for member in cls)
            raise ImproperlyConfigured(
                f"DJANGO_ENV={value!r} is not one of: {choices}. Set DJANGO_ENV to one of them."
            ) from None


def database_from_url(
    url: str, *, sqlite_path: Path, health_checks: bool = False, prepared_statements: bool = True
) -> dict[str, Any]:
    """Return a Django DATABASES entry for a ``DATABASE_URL``, or SQLite when it is empty.

    The seed's SQLAlchemy spelling ``postgresql+psycopg://`` is accepted next to
    ``postgres://`` and ``postgresql://``, so an existing ``.env`` keeps working.
    """
    if not url:
        return sqlite_database(sqlite_path)

    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ImproperlyConfigured(
            "DATABASE_URL is not a URL. Use postgres://user:password@host:5432/name, "
            "or leave it empty for SQLite."
        )
    config: dict[str, Any] = dict(environ.Env.db_url_config(f"{scheme.split('+', 1)[0]}://{rest}"))
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return sqlite_database(Path(config["NAME"]) if config["NAME"] else sqlite_path)
    if engine != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"DATABASE_URL has the unsupported scheme {scheme!r}. "
            "Use postgres://user:password@host:5432/name, or leave it empty for SQLite."
        )
    if not config["NAME"]:
        raise ImproperlyConfigured(
            "DATABASE_URL names no database. Use postgres://user:password@host:5432/name."
        )
    # Persistent connections. Checking one before each request costs a round trip; without
    # the check, the first request on a connection broken by a database restart fails
    # (503) and the connection is replaced.
    config.setdefault("CONN_MAX_AGE", 60)
    config["CONN_HEALTH_CHECKS"] = health_checks
    # Django turns psycopg's prepared statements off, for poolers that hand each
    # transaction to another server session. Its own cursors bind on the client and are
    # never prepared either way; what this enables is the preparing of the server-bound
    # statements every ingested batch runs (quantumfleet.database.bound_cursor), which
    # halves PostgreSQL's work per small batch. Behind a transaction pooler that cannot
    # keep prepared statements (PgBouncer before 1.21), DB_PREPARED_STATEMENTS=false.
    config.setdefault("OPTIONS", {})["prepare_threshold"] = (
        PREPARE_THRESHOLD if prepared_statements else None
    )
    return config


def sqlite_database(path: Path) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            # WAL lets the web server read while a daemon writes; IMMEDIATE transactions
            # take the write lock up front instead of failing half way with "locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }


def parse_jwt_algorithm(value: str) -> str:
    algorithm = value.strip().upper()
    if algorithm not in SUPPORTED_JWT_ALGORITHMS:
        raise ImproperlyConfigured(
            f"JWT_ALG={value!r} is not supported. Set JWT_ALG to one of: "
            + ", ".join(SUPPORTED_JWT_ALGORITHMS)
            + "."
        )
    return algorithm


THROTTLE_PERIODS = ("second", "minute", "hour", "day")


def parse_throttle_rate(name: str, value: str) -> str | None:
    """A DRF rate such as ``600/minute``; empty or ``off`` turns the throttle off (None)."""
    rate = value.strip().lower()
    if rate in {"", "off", "none"}:
        return None
    count, _, period = rate.partition("/")
    if not count.isdigit() or int(count) <= 0 or not period or period[0] not in "smhd":
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a rate. Set it to requests per period, e.g. "
            f"600/minute (periods: {', '.join(THROTTLE_PERIODS)}), or to off."
        )
    return rate


def cache_from_url(url: str) -> dict[str, Any]:
    """A Django CACHES entry: Redis for ``redis://`` URLs, else one cache per process.

    Login-failure counters and API throttles live in this cache, so every web process
    must share it for their limits to hold: in production that is Redis.
    """
    if not url:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if url.partition("://")[0] not in {"redis", "rediss"}:
        raise ImproperlyConfigured(
            f"CACHE_URL={url!r}: use redis://host:6379/1 (or rediss://), or leave it empty."
        )
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "quantumfleet",
    }


def check_production_settings(
    *,
    environment: Environment,
    secret_key: str,
    jwt_secret: str,
    debug: bool,
    cors_origins: Sequence[str],
    allowed_hosts: Sequence[str],
) -> None:
    """Raise ImproperlyConfigured listing every setting unsafe for production.

    Outside production this only checks that the secrets are present at all.
    """
    if environment != Environment.PRODUCTION:
        return

    problems = []
    if not secret_key or secret_key == DEVELOPMENT_SECRET:
        problems.append("SECRET_KEY is unset or the development default: set a random value.")
    elif len(secret_key) < MINIMUM_SECRET_LENGTH:
        problems.append(f"SECRET_KEY is shorter than {MINIMUM_SECRET_LENGTH} characters.")
    if not jwt_secret or jwt_secret == DEVELOPMENT_JWT_SECRET:
        problems.append("JWT_SECRET is unset or the development default: set a random value.")
    elif len(jwt_secret) < MINIMUM_SECRET_LENGTH:
        problems.append(f"JWT_SECRET is shorter than {MINIMUM_SECRET_LENGTH} characters.")
    elif jwt_secret == secret_key:
        problems.append("JWT_SECRET equals SECRET_KEY: give the token signer its own secret.")
    if debug:
        problems.append("DEBUG is on: set DEBUG=false.")
    if any(origin.strip() == "*" for origin in cors_origins):
        problems.append(
            "CORS_ALLOWED_ORIGINS contains '*': list the allowed origins, "
            "e.g. https://fleet.example.com."
        )
    if not allowed_hosts or "*" in allowed_hosts:
        problems.append("ALLOWED_HOSTS is empty or '*': list the host names the API serves.")

    if problems:
        raise ImproperlyConfigured(
            "Refusing to start with DJANGO_ENV=production:\n- " + "\n- ".join(problems)
        )
