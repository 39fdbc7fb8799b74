"""The JWKS endpoint."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_GET

from tokens.jwks import build_jwks
from tokens.keys import ensure_active_key
from tokens.models import SigningKey
from tokens.rotation import algorithms_in_use


@require_GET
def jwks(request: HttpRequest) -> HttpResponse:
    """RFC 7517 §5: the public keys clients use to verify our signatures."""
    keys = list(SigningKey.objects.publishable().order_by("created_at"))
    signing = {key.algorithm for key in keys if key.state == SigningKey.State.ACTIVE}
    missing = [algorithm for algorithm in algorithms_in_use() if algorithm not in signing]
    if missing:  # a database without a usable key heals itself rather than serving an empty JWKS
        for algorithm in missing:
            ensure_active_key(algorithm=algorithm)
        keys = list(SigningKey.objects.publishable().order_by("created_at"))
    document = build_jwks(keys)
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Cache-Control": f"public, max-age={settings.UAA_JWKS_MAX_AGE}",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
    }
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type="application/jwk-set+json")
    for name, value in headers.items():
        response[name] = value
    return response
