"""The files an operator starts from stay consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    return (ROOT / name).read_text()


def test_every_setting_read_from_the_environment_is_documented():
    read_by_settings = set(
        re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', read("quantumfleet/settings.py"))
    )
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", read("docs/configuration.md")))

    assert read_by_settings, "the pattern no longer finds the settings"
    assert read_by_settings - documented == set()


def test_compose_describes_the_stack_and_its_dependencies():
    compose = yaml.safe_load(read("compose.yaml"))
    services = compose["services"]

    assert {"postgres", "redis", "mqtt", "migrate", "web", "worker", "beat"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    assert services["web"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ["postgres", "redis", "mqtt", "web", "worker", "teltonika", "mqtt-ingest"]:
        assert "healthcheck" in services[name], name
    long_running = set(services) - {"migrate"}
    for name in long_running:
        assert services[name].get("restart") == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"
    for name in ["teltonika", "mqtt-ingest", "worker"]:
        # Time to store and acknowledge what they hold before they are killed.
        assert services[name]["stop_grace_period"], name


def test_compose_runs_production_mode_without_default_secrets():
    compose = read("compose.yaml")
    environment = yaml.safe_load(compose)["services"]["web"]["environment"]

    assert environment["DJANGO_ENV"] == "production"
    assert "POSTGRES_PASSWORD:?" in compose
    assert "SECRET_KEY" not in environment


def test_the_readme_shows_the_two_command_start():
    readme = read("README.md")

    assert "make run\nmake test\n" in readme
