"""Health, the OpenAPI schema and its docs page, and the JSON error shape."""

from __future__ import annotations

import socket

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestHealth:
    def test_it_reports_the_database(self, anonymous, settings):
        settings.REDIS_URL = ""

        response = anonymous.get("/health")

        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert response.json()["checks"]["database"]["status"] == "ok"
        assert "redis" not in response.json()["checks"]

    def test_it_is_503_when_redis_is_unreachable(self, anonymous, settings):
        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"

        response = anonymous.get("/health")

        assert response.status_code == 503
        assert response.json()["status"] == "error"
        assert response.json()["checks"]["redis"]["status"] == "error"

    def test_it_checks_a_real_redis(self, anonymous, settings):
        settings.REDIS_URL = "redis://127.0.0.1:6379/0"

        response = anonymous.get("/health")

        assert response.status_code == 200
        assert response.json()["checks"]["redis"]["status"] == "ok"


class TestSchema:
    def test_the_schema_is_valid_openapi_without_warnings(self, tmp_path):
        call_command(
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(tmp_path / "schema.yaml"),
        )

    def test_every_operation_is_tagged_by_its_app_and_documents_errors(self, anonymous):
        schema = anonymous.get("/api/schema/?format=json").json()

        tags = {}
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                tags[(method, path)] = operation["tags"]
                assert "400" in operation["responses"], (method, path)
        assert tags[("post", "/auth/login")] == ["accounts"]
        assert tags[("get", "/devices")] == ["devices"]
        assert tags[("post", "/tenants/{tenant_id}/users/{user_id}/roles/{role}")] == ["tenants"]
        assert tags[("get", "/health")] == ["system"]
        assert "Error" in schema["components"]["schemas"]

    def test_tenant_scoped_routes_document_the_tenant_header(self, anonymous):
        schema = anonymous.get("/api/schema/?format=json").json()

        devices = schema["paths"]["/devices"]["get"]
        tenant_roles = schema["paths"]["/tenants/{tenant_id}/users/{user_id}/roles"]["get"]
        assert "X-Tenant-Id" in [p["name"] for p in devices["parameters"]]
        assert "X-Tenant-Id" not in [p["name"] for p in tenant_roles.get("parameters", [])]

    def test_the_docs_page_and_its_assets_are_served_locally(self):
        client = Client()

        page = client.get("/api/docs/")
        html = page.content.decode()

        assert page.status_code == 200
        assert "swagger-ui" in html
        assert "cdn.jsdelivr" not in html
        assert "unpkg.com" not in html
        bundle = next(
            part.split('"')[0] for part in html.split('src="')[1:] if "swagger-ui-bundle" in part
        )
        asset = client.get(bundle)
        assert asset.status_code == 200


class TestErrors:
    def test_an_unknown_route_is_a_json_404(self, anonymous):
        response = anonymous.get("/no/such/route")

        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "not_found"

    def test_malformed_json_is_a_json_400(self, anonymous):
        response = anonymous.post("/auth/login", data="{not json", content_type="application/json")

        assert response.status_code == 400
        assert response.json()["code"] == "parse_error"

    def test_an_unsupported_media_type_is_named(self, anonymous):
        response = anonymous.post("/auth/register", data="<x/>", content_type="application/xml")

        assert response.status_code == 415
        assert response.json()["code"] == "unsupported_media_type"

    def test_an_oversized_body_is_a_json_413_and_stores_nothing(self, anonymous, settings):
        from apps.accounts.models import User

        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
        body = '{"email": "big@example.com", "password": "' + "x" * 200_000 + '"}'

        response = anonymous.post("/auth/register", body, content_type="application/json")

        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert not User.objects.exists()

    def test_a_wrong_method_is_a_json_405(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).delete("/devices")

        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"


def test_swagger_uis_authorize_dialog_logs_in_through_the_documented_token_url(anonymous):
    from apps.accounts.models import User

    User.objects.create_user("swagger@example.com", "Swagger-pass-1")
    schema = anonymous.get("/api/schema/?format=json").json()
    flow = schema["components"]["securitySchemes"]["jwtAuth"]["flows"]["password"]

    # What Swagger UI posts for the OAuth2 password flow.
    response = anonymous.post(
        flow["tokenUrl"],
        "grant_type=password&username=swagger%40example.com&password=Swagger-pass-1"
        "&scope=&client_id=",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


@pytest.mark.parametrize(
    ("handler", "status"),
    [("server_error", 500), ("bad_request", 400), ("not_found", 404)],
)
def test_django_level_errors_are_json_on_api_paths_and_html_in_the_admin(handler, status, rf):
    from quantumfleet import views

    view = getattr(views, handler)
    arguments = () if handler == "server_error" else (Exception("boom"),)

    api = view(rf.get("/devices/1"), *arguments)
    admin = view(rf.get("/admin/devices/"), *arguments)

    assert api.status_code == admin.status_code == status
    assert api["Content-Type"] == "application/json"
    assert "boom" not in api.content.decode()
    assert admin["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/ingest/http", "/auth/login", "/auth/register"])
def test_json_nested_too_deeply_is_a_400_not_a_crash(anonymous, path):
    body = "[" * 200_000 + "]" * 200_000

    response = anonymous.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
