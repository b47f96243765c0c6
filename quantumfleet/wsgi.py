"""WSGI entry point, served by gunicorn in production."""

import os

from django.core.wsgi import get_wsgi_application

from quantumfleet.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumfleet.settings")

application = get_wsgi_application()

freeze_startup_objects()
