"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

from quantumfleet.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumfleet.settings")

application = get_asgi_application()

freeze_startup_objects()
