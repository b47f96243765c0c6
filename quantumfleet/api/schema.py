"""OpenAPI generation: a tag per app, the tenant header, and documented error bodies."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error response has this shape.",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "code": {"type": "string", "description": "A stable machine-readable reason."},
        "errors": {
            "type": "object",
            "description": "Messages per input field, keyed by dotted path (`points.3.ts`).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail", "code"],
}

TENANT_HEADER = OpenApiParameter(
    name="X-Tenant-Id",
    type=int,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "The tenant the request acts in. Optional when the caller belongs to exactly one tenant."
    ),
)


class JWTPasswordFlowScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents JWT auth as the OAuth2 password flow of ``POST /auth/login``.

    Swagger UI's Authorize dialog then asks for email and password and fetches the token
    itself, instead of asking people to paste a token they got elsewhere.
    """

    target_class = "rest_framework_simplejwt.authentication.JWTAuthentication"
    name = "jwtAuth"
    priority = 1

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "oauth2",
            "description": "Email as username. Send the token as `Authorization: Bearer`.",
            "flows": {
                "password": {"tokenUrl": "/auth/login", "refreshUrl": "/auth/refresh", "scopes": {}}
            },
        }


class AppTaggedAutoSchema(AutoSchema):
    """Tags each operation with the app that declares it and adds the tenant header."""

    def get_tags(self) -> list[str]:
        module = type(self.view).__module__
        parts = module.split(".")
        if parts[0] == "apps" and len(parts) > 1:
            return [parts[1]]
        return ["system"]

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if getattr(self.view, "tenant_from_header", False):
            parameters.append(TENANT_HEADER)
        return parameters


def drop_optional_trailing_slash(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: document ``/devices``, not ``/devices/``.

    Routes accept both (see OptionalSlashRouter); the seed's spelling is the one to show.
    """
    result["paths"] = {
        (path.rstrip("/") or "/"): operations for path, operations in result["paths"].items()
    }
    return result


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: document the error shape on every operation that can fail."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    error_response = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }

    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = ["400"]
            if operation.get("security") != [{}] and {} not in operation.get("security", []):
                codes += ["401", "403", "429"]
            elif path.startswith("/auth/"):
                # Public, but each client address has a rate (API_AUTH_THROTTLE_RATE).
                codes.append("429")
            if "{" in path:
                codes.append("404")
            if method in {"post", "put", "patch"}:
                codes += ["413", "415"]
            for code in codes:
                responses.setdefault(code, error_response)
            for code, response in responses.items():
                # Error responses declared in a view with only a description get the body.
                if code.startswith(("4", "5")) and "content" not in response:
                    response["content"] = error_response["content"]
    return result
