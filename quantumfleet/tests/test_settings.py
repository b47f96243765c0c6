"""Settings from the environment, and the refusal to run production on unsafe defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from quantumfleet.environment import Environment, check_production_settings, database_from_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "k" * 50
STRONG_JWT_SECRET = "j" * 50

SAFE_PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": STRONG_SECRET,
    "JWT_SECRET": STRONG_JWT_SECRET,
    "ALLOWED_HOSTS": "fleet.example.com",
    "CORS_ALLOWED_ORIGINS": "https://fleet.example.com",
    "DATABASE_URL": "",
}


def run_manage_check(**overrides: str) -> subprocess.CompletedProcess[str]:
    """Start a fresh Django process with these variables, as an operator would."""
    env = {key: value for key, value in os.environ.items() if key not in SAFE_PRODUCTION}
    env.pop("DEBUG", None)
    env.update(SAFE_PRODUCTION)
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "CRITICAL"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_starts_with_safe_settings():
    result = run_manage_check()

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"JWT_SECRET": ""}, "JWT_SECRET"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"JWT_SECRET": STRONG_SECRET}, "JWT_SECRET"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS"),
        ({"CORS_ALLOWED_ORIGINS": "https://a.example.com,*"}, "CORS_ALLOWED_ORIGINS"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV"),
        ({"JWT_ALG": "RS256"}, "JWT_ALG"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL"),
    ],
)
def test_production_refuses_unsafe_settings_and_names_the_variable(overrides, named):
    result = run_manage_check(**overrides)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_the_development_secret_is_refused_in_production():
    from quantumfleet.environment import DEVELOPMENT_SECRET

    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        check_production_settings(
            environment=Environment.PRODUCTION,
            secret_key=DEVELOPMENT_SECRET,
            jwt_secret=STRONG_JWT_SECRET,
            debug=False,
            cors_origins=[],
            allowed_hosts=["fleet.example.com"],
        )


def test_every_problem_is_listed_at_once():
    with pytest.raises(ImproperlyConfigured) as raised:
        check_production_settings(
            environment=Environment.PRODUCTION,
            secret_key="",
            jwt_secret="",
            debug=True,
            cors_origins=["*"],
            allowed_hosts=[],
        )

    message = str(raised.value)
    for variable in ["SECRET_KEY", "JWT_SECRET", "DEBUG", "CORS_ALLOWED_ORIGINS", "ALLOWED_HOSTS"]:
        assert variable in message


def test_development_accepts_the_defaults():
    check_production_settings(
        environment=Environment.DEVELOPMENT,
        secret_key="",
        jwt_secret="",
        debug=True,
        cors_origins=["*"],
        allowed_hosts=[],
    )


class TestDatabaseUrl:
    def test_no_url_means_the_embedded_sqlite_file(self, tmp_path):
        config = database_from_url("", sqlite_path=tmp_path / "db.sqlite3")

        assert config["ENGINE"] == "django.db.backends.sqlite3"
        assert config["NAME"] == tmp_path / "db.sqlite3"

    @pytest.mark.parametrize(
        "url",
        [
            "postgres://fleet:s%40cret@db.example.com:5433/quantumfleet",
            "postgresql://fleet:s%40cret@db.example.com:5433/quantumfleet",
            "postgresql+psycopg://fleet:s%40cret@db.example.com:5433/quantumfleet",
        ],
    )
    def test_postgres_urls_in_every_spelling(self, tmp_path, url):
        config = database_from_url(url, sqlite_path=tmp_path / "x")

        assert config["ENGINE"] == "django.db.backends.postgresql"
        assert (config["NAME"], config["USER"], config["PASSWORD"]) == (
            "quantumfleet",
            "fleet",
            "s@cret",
        )
        assert (config["HOST"], int(config["PORT"])) == ("db.example.com", 5433)
        assert config["CONN_HEALTH_CHECKS"] is False

    def test_query_options_reach_the_driver(self, tmp_path):
        config = database_from_url(
            "postgres://u@h/db?sslmode=require&conn_max_age=0", sqlite_path=tmp_path / "x"
        )

        assert config["OPTIONS"]["sslmode"] == "require"
        assert config["CONN_MAX_AGE"] == 0

    def test_prepared_statements_are_on_unless_turned_off(self, tmp_path):
        url = "postgres://u@h/db"
        on = database_from_url(url, sqlite_path=tmp_path / "x")
        off = database_from_url(url, sqlite_path=tmp_path / "x", prepared_statements=False)

        assert on["OPTIONS"]["prepare_threshold"] == 5
        # None is psycopg's "never prepare", what a transaction pooler needs.
        assert off["OPTIONS"]["prepare_threshold"] is None

    @pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "postgres://u@h/"])
    def test_unsupported_urls_say_how_to_fix_them(self, tmp_path, url):
        with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
            database_from_url(url, sqlite_path=tmp_path / "x")


def test_the_suite_runs_in_test_mode(settings):
    assert settings.DJANGO_ENV == Environment.TEST
    assert settings.DEBUG is False
