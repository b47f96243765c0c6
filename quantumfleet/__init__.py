"""Quantum Fleet project package: settings, root URLs, the Celery app, WSGI and ASGI."""

from quantumfleet.celery import app as celery_app

__all__ = ["celery_app"]
