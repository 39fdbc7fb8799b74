"""The JWKS endpoint, the audit keys (the public keys of the audit ledger) and its latest signed tree head."""

from __future__ import annotations

import hashlib
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.utils import timezone
from django.utils.http import parse_etags
from django.views.decorators.http import require_safe

from tokens.jwks import published_key_set
from tokens.ledger import SealRefused, published_tree_head
from tokens.ledger.audit_keys import audit_jwks
from tokens.rotation import algorithms_in_use, ensure_active_key
from tokens.verifier import canonical_json


@require_safe
def jwks(request: HttpRequest) -> HttpResponse:
    """RFC 7517 §5: the public keys clients use to verify our signatures."""
    return jwks_response(request, heal=True)


def jwks_response(request: HttpRequest, *, heal: bool) -> HttpResponse:
    """The JWKS answer. With ``heal``, a database without an active key for an algorithm in use makes one
    first (a fresh or broken database heals itself rather than serving an empty JWKS); without, it only
    reads (the last good copy refreshed after a key change, uaa/middleware.py)."""
    key_set = published_key_set()  # read now; built again only when the rows differ (tokens/jwks.py)
    missing = [algorithm for algorithm in algorithms_in_use() if algorithm not in key_set.signing]
    if missing and heal:
        for algorithm in missing:
            ensure_active_key(algorithm=algorithm, now=timezone.now())
        key_set = published_key_set()
    body, etag = key_set.body, key_set.etag
    headers = {
        "Cache-Control": f"public, max-age={settings.UAA_JWKS_MAX_AGE}",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
    }
    if _none_match(etag, request.headers.get("If-None-Match", "")):
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type="application/jwk-set+json")
    for name, value in headers.items():
        response[name] = value
    return response


@require_safe
def audit_keys(request: HttpRequest) -> HttpResponse:
    """RFC 7517 JWK Set of every audit key (RFC 8037 Ed25519): what verifies the ledger's tree heads."""
    body = canonical_json(audit_jwks())
    response = HttpResponse(body, content_type="application/jwk-set+json")
    response["Cache-Control"] = f"public, max-age={settings.UAA_JWKS_MAX_AGE}"
    response["Access-Control-Allow-Origin"] = "*"
    return response


AUDIT_HEAD_MAX_AGE = 5  # seconds: witnesses poll it; a seal happens every 10 s


@require_safe
def audit_head(request: HttpRequest) -> HttpResponse:
    """The latest signed tree head of the audit ledger, for auditors and witnesses to save and compare
    (RFC 9162 §8.1); the verifier takes a saved copy as ``--trusted-head``."""
    try:
        head = published_tree_head()
    except SealRefused:  # a head the sealer would not extend (logged): a bad signature, behind its witness
        return _json_error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The latest tree head cannot be verified; try again later.",
            {"Retry-After": "60"},
        )
    if head is None:
        return _json_error(HTTPStatus.NOT_FOUND, "not_found", "No tree head has been signed yet.", {})
    body = canonical_json(head)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Cache-Control": f"public, max-age={AUDIT_HEAD_MAX_AGE}",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
    }
    if _none_match(etag, request.headers.get("If-None-Match", "")):
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def _json_error(status: int, code: str, description: str, headers: dict[str, str]) -> JsonResponse:
    response = JsonResponse({"error": code, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response[name] = value
    return response


def _none_match(etag: str, header: str) -> bool:
    """RFC 9110 §13.1.2: If-None-Match compares weakly (a ``W/`` prefix is ignored); ``*`` matches."""
    tags = parse_etags(header)
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)
