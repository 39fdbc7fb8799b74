"""The OpenAPI 3.1 document: generated from the code, committed as docs/openapi.yaml, served at
/api/v1/schema; the reference page loads nothing from another origin (the CSP would block it, and a CDN
would see who administers UAA)."""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path

import yaml
from django.test import Client as HttpClient
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.validation import validate_schema

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
REGENERATE = "DEBUG=1 .venv/bin/python manage.py spectacular --validate --file docs/openapi.yaml"


def generated() -> str:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    return OpenApiYamlRenderer().render(schema, renderer_context={}).decode()


def test_the_committed_document_is_what_the_code_generates(db):
    assert generated() == COMMITTED.read_text(), f"docs/openapi.yaml is stale: run {REGENERATE}"


def test_every_operation_names_the_admin_scope_it_needs(db):
    schema = yaml.safe_load(COMMITTED.read_text())
    assert schema["openapi"] == "3.1.0"
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert operations
    for operation in operations:
        [requirement] = operation["security"]
        [scope] = requirement["adminToken"]
        assert re.fullmatch(r"uaa\.(clients|keys|users|audit)\.(read|write)", scope)


def test_the_schema_is_served(db):
    response = HttpClient().get("/api/v1/schema")
    assert response.status_code == HTTPStatus.OK
    assert yaml.safe_load(response.content)["openapi"] == "3.1.0"


def test_the_reference_page_loads_only_this_servers_files(db):
    response = HttpClient().get("/api/v1/docs")
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/") and not source.startswith("//") for source in sources)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    script = HttpClient().get(next(s for s in sources if "?script" in s))
    assert script.status_code == HTTPStatus.OK and b"/api/v1/schema" in script.content


def test_every_operation_documents_its_error_answers(db):
    """A client generated from the document must know the 401 and 403 every operation can give."""
    schema = yaml.safe_load(COMMITTED.read_text())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            answers = set(operation["responses"])
            assert {"400", "401", "403"} <= answers, (method, path)
            assert "{" not in path or "404" in answers, (method, path)  # routes without an id: their own


def test_an_unknown_api_path_is_a_json_404(db):
    for path in ("/api/v1/nothing", "/api/v1/keys/%00", "/api/v1/clients/a/b/c"):
        response = HttpClient().get(path)
        assert response.status_code == HTTPStatus.NOT_FOUND
        assert response.json()["error"] == "not_found"


def test_the_schema_pages_check_no_password(db, user, password):
    """DRF's default authentication would check HTTP Basic passwords on these public views: an endpoint to
    guess passwords outside the sign-in throttling (accounts/throttling.py). No credential is looked at."""
    import base64

    for wrong in ("wrong password", password):
        basic = base64.b64encode(f"{user.email}:{wrong}".encode()).decode()
        for path in ("/api/v1/schema", "/api/v1/docs"):
            response = HttpClient().get(path, HTTP_AUTHORIZATION=f"Basic {basic}")
            assert response.status_code == HTTPStatus.OK, (path, response.status_code)
