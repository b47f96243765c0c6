"""Project-level views: health, and JSON error pages for the API."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 2.0


def check_database() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        logger.exception("health.database_failed")
        return {"status": "error", "error": type(error).__name__}
    return {
        "status": "ok",
        "vendor": connection.vendor,
        "latency_ms": round((time.monotonic() - started) * 1000, 2),
    }


def check_redis(url: str) -> dict[str, Any]:
    import redis

    started = time.monotonic()
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        logger.exception("health.redis_failed")
        return {"status": "error", "error": type(error).__name__}
    return {"status": "ok", "latency_ms": round((time.monotonic() - started) * 1000, 2)}


class HealthView(APIView):
    """Liveness and the state of the services the API depends on."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.ChoiceField(choices=["ok", "error"]),
                    "checks": serializers.DictField(child=serializers.DictField()),
                },
            ),
            503: inline_serializer(
                "Unhealthy",
                {
                    "status": serializers.ChoiceField(choices=["ok", "error"]),
                    "checks": serializers.DictField(child=serializers.DictField()),
                },
            ),
        },
        summary="Health of the API and its dependencies",
        description="200 when every check passes, 503 when any fails. Redis only when configured.",
    )
    def get(self, request: Request) -> Response:
        checks = {"database": check_database()}
        if settings.REDIS_URL:
            checks["redis"] = check_redis(settings.REDIS_URL)
        healthy = all(check["status"] == "ok" for check in checks.values())
        return Response(
            {"status": "ok" if healthy else "error", "checks": checks},
            status=200 if healthy else 503,
        )


class LivenessView(APIView):
    """The process answers: no dependency is checked (see /health for that)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={200: inline_serializer("Liveness", {"status": serializers.CharField()})},
        summary="Liveness of the web process",
        description="For load balancers and restarts: 200 whenever the process serves requests.",
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


def is_html_path(request: HttpRequest) -> bool:
    return request.path.startswith(("/admin", "/api/docs", "/static"))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_html_path(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(
        {"detail": f"No route matches {request.method} {request.path}.", "code": "not_found"},
        status=404,
    )


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_html_path(request):
        return defaults.bad_request(request, exception)
    return JsonResponse(
        {"detail": "The request could not be understood.", "code": "bad_request"}, status=400
    )


def server_error(request: HttpRequest) -> HttpResponse:
    if is_html_path(request):
        return defaults.server_error(request)
    return JsonResponse(
        {"detail": "The server failed to handle the request.", "code": "server_error"},
        status=500,
    )
