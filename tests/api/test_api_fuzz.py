"""A bounded, seeded fuzz of every operation in docs/openapi.yaml, run in-process: no answer is a 5xx, every
status is one the document lists for the operation, and every 2xx JSON body matches its documented schema
(JSON Schema 2020-12, which OpenAPI 3.1 schemas are).

The attacker sends what a schema-driven fuzzer (schemathesis) would: each field of a well-formed body in
turn with a wrong type, NUL, a lone surrogate, a value far over its length, deep nesting; unknown members;
query parameters likewise. Several of these only fail on PostgreSQL (NUL, surrogates, over-long values).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from django.test import Client as HttpClient
from django.utils import timezone
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.api.conftest import ALL_ADMIN
from tests.factories import UserFactory
from tokens import ledger
from tokens.models import LedgerRecord
from tokens.rotation import ensure_active_key

SEED = 20261203
DOCUMENT = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
BASE = "urn:uaa:openapi"
REGISTRY = Registry().with_resource(BASE, DRAFT202012.create_resource(DOCUMENT))
OPERATIONS = [
    (path, method, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in ("get", "post", "patch", "delete")
]
HOSTILE: list[Any] = [
    None,
    12,
    -1,
    1e308,
    True,
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 5000,
    [],
    ["\x00"],
    [["nested"]],
    {},
    {"a": {"b": {"c": [1]}}},
    "https://evil.example/#frag",
    "../../etc/passwd",
    "' OR 1=1 --",
]


def _schema(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in ref_or_schema:
        name = ref_or_schema["$ref"].rsplit("/", 1)[1]
        return DOCUMENT["components"]["schemas"][name]
    return ref_or_schema


def _example(schema: dict[str, Any], rng: random.Random) -> Any:
    schema = _schema(schema)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "oneOf" in schema or "allOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf") or schema.get("allOf") or schema.get("anyOf") or [{}]
        return _example(options[0], rng)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "object":
        return {name: _example(sub, rng) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [_example(schema.get("items", {"type": "string"}), rng)]
    if kind == "boolean":
        return rng.choice([True, False])
    if kind == "integer":
        return rng.randint(0, 3)
    if schema.get("format") == "email":
        return f"fuzz{rng.randint(0, 10**6)}@example.com"
    if schema.get("format") == "uri" or "uri" in str(schema.get("description", "")).lower():
        return "https://rp.example.com/cb"
    return "https://rp.example.com/cb" if rng.random() < 0.3 else f"value-{rng.randint(0, 99)}"


def _bodies(operation: dict[str, Any], rng: random.Random) -> list[Any]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return [None, {"unexpected": 1}]
    schema = _schema(content["schema"])
    good = _example(schema, rng)
    bodies: list[Any] = [good, {}, [], "text", {**good, "unknown_member": 1}]
    for name in schema.get("properties", {}):
        for value in rng.sample(HOSTILE, 6):
            bodies.append({**good, name: value})
    return bodies


def _queries(operation: dict[str, Any], rng: random.Random) -> list[dict[str, str]]:
    names = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"]
    queries: list[dict[str, str]] = [{}]
    for name in names:
        for value in ("\x00", "x" * 3000, "-1", "99999999999999999999", "2026-01-01", "é", "a%"):
            queries.append({name: value})
    return queries


def _validate(schema: dict[str, Any], body: Any) -> None:
    """``schema``'s references point into the document (the registry's resource at BASE)."""
    resolved = json.loads(json.dumps(schema).replace('"#/components', f'"{BASE}#/components'))
    Draft202012Validator(resolved, registry=REGISTRY).validate(body)


@pytest.fixture
def world(admin_client, confidential_client):
    from tests.api.conftest import client_credentials_token

    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    victim = UserFactory()
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    ledger.seal_tree_head(now=timezone.now())
    token = client_credentials_token(admin_client(), ALL_ADMIN)
    ids = {"client_id": confidential_client.client_id, "kid": key.kid, "user_id": str(victim.pk)}
    return token, ids


def _send(method: str, path: str, token: str, query: dict[str, str], body: Any) -> Any:
    url = path + ("?" + "&".join(f"{name}={quote(value)}" for name, value in query.items()) if query else "")
    kwargs: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if body is not None and method in ("post", "patch"):
        kwargs["data"] = json.dumps(body)
        kwargs["content_type"] = "application/json"
    return getattr(HttpClient(), method)(url, **kwargs)


@pytest.mark.parametrize(
    ("path", "method", "operation"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS]
)
def test_no_input_breaks_an_operation_or_its_schema(world, path, method, operation):
    token, ids = world
    rng = random.Random(f"{SEED}:{method}:{path}")
    concrete = path
    for name, value in ids.items():
        concrete = concrete.replace("{" + name + "}", value)
    documented = set(operation["responses"])
    cases = [(query, None) for query in _queries(operation, rng)]
    cases += [({}, body) for body in _bodies(operation, rng)]
    for query, body in cases:
        response = _send(method, concrete, token, query, body)
        status = str(response.status_code)
        assert response.status_code < 500, (method, concrete, query, body, response.content[:300])
        assert status in documented, (method, concrete, status, body)
        if response.status_code < 300 and response.get("Content-Type", "") != "application/json":
            assert response.status_code == 204 or response["Content-Type"] in operation["responses"][
                status
            ].get("content", {}), (
                method,
                concrete,
                response["Content-Type"],
            )  # the export: application/zip, streamed
            continue
        if response.status_code < 300 and response.content:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            _validate(schema, response.json())


@pytest.mark.parametrize("method", ["get", "patch", "delete", "post"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/clients/%00",
        "/api/v1/clients/%ED%A0%80",
        "/api/v1/clients/" + "a" * 3000,
        "/api/v1/clients/%00/rotate-secret",
        "/api/v1/users/%00000000-0000-0000-0000-000000000000",
        "/api/v1/keys/" + "a" * 64 + "/revoke",
    ],
)
def test_no_path_id_breaks_an_operation(world, method, path):
    """A path id is looked up in the database: NUL (PostgreSQL refuses it), bytes that are not UTF-8,
    a length past the column's."""
    token, _ids = world
    response = _send(method, path, token, {}, {} if method in ("patch", "post") else None)
    assert response.status_code in (404, 405), (method, path, response.content[:200])
