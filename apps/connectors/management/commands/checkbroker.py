"""``manage.py checkbroker``: whether Celery's broker is configured and answers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from quantumfleet.celery import app


class Command(BaseCommand):
    help = (
        "Exit 0 and print the broker (without credentials) when CELERY_BROKER_URL answers; "
        "exit 1 with the reason otherwise. `make run` uses it to start a worker and beat."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        url = settings.CELERY_BROKER_URL
        if not url:
            raise CommandError("no CELERY_BROKER_URL or REDIS_URL is set")
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as error:
            raise CommandError(f"the broker at {shown} does not answer ({error})") from None
        self.stdout.write(shown)
