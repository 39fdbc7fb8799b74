"""HTTP calls on the token, revocation, introspection, userinfo and JWKS endpoints, as clients make them."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

from django.test import Client as HttpClient

from tests.oauth_client import form_post, verify_with_jwks

if TYPE_CHECKING:
    from tests.conftest import RegisteredClient


def credentials(registered: RegisteredClient) -> dict[str, Any]:
    """How ``registered`` authenticates: Basic for a confidential client, client_id in the body otherwise."""
    if registered.secret:
        return {"auth": registered.basic, "body": {}}
    return {"auth": None, "body": {"client_id": registered.client_id}}


def token_request(registered: RegisteredClient, data: dict[str, str]) -> Any:
    how = credentials(registered)
    return form_post(HttpClient(), "/oauth/token", {**how["body"], **data}, auth=how["auth"])


def refresh(registered: RegisteredClient, refresh_token: str, **extra: str) -> Any:
    return token_request(registered, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra})


def revoke(registered: RegisteredClient, token: str, **extra: str) -> Any:
    how = credentials(registered)
    return form_post(
        HttpClient(), "/oauth/revoke", {**how["body"], "token": token, **extra}, auth=how["auth"]
    )


def introspect(registered: RegisteredClient, token: str, **extra: str) -> Any:
    how = credentials(registered)
    data = {**how["body"], "token": token, **extra}
    return form_post(HttpClient(), "/oauth/introspect", data, auth=how["auth"])


def userinfo(access_token: str, *, method: str = "GET") -> Any:
    """OIDC Core §5.3.1: GET, or POST with an empty form body; the token in the Authorization header."""
    bearer = f"Bearer {access_token}"
    if method == "POST":
        return form_post(HttpClient(), "/oauth/userinfo", {}, auth=bearer)
    return HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=bearer)


def jwks() -> dict[str, Any]:
    return HttpClient().get("/.well-known/jwks.json").json()


def verified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of ``token``, verified against the published JWKS as a relying party would."""
    return verify_with_jwks(token, jwks())


def unverified_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def left_half_hash(value: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left-most half of the SHA-256 hash (at_hash, c_hash)."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")
