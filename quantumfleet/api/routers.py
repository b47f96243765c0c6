"""Routing that keeps the seed's slash-less paths and accepts a trailing slash too."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """A router whose routes match ``/devices`` and ``/devices/`` alike.

    The seed's clients call paths without a trailing slash; Django's habit is to add one.
    Accepting both avoids a redirect, which would turn a POST into a GET in many clients.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
