"""A small OAuth client for tests: PKCE pairs, authorization URLs, token requests, JWT verification."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client as HttpClient
from jwcrypto import jwk, jws


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: str = "openid profile email"
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    verifier: str = ""
    challenge: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.verifier:
            self.verifier, self.challenge = pkce_pair()

    def url(self, **overrides: str | None) -> str:
        params: dict[str, Any] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **self.extra,
            **overrides,
        }
        return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def authorize(
    http: HttpClient, request: AuthorizationRequest, *, consent: bool = True, **overrides: str | None
) -> dict[str, str]:
    """Drive the authorization endpoint for a signed-in ``http`` client; returns the redirect's query."""
    response = http.get(request.url(**overrides))
    if response.status_code == 200 and consent:
        form = response.context["form"]
        data = {name: form.initial.get(name) or "" for name in form.fields}
        data["allow"] = "Authorize"
        response = http.post("/oauth/authorize", data)
    assert response.status_code == 302, (response.status_code, response.content[:500])
    return query_of(response["Location"])


def exchange_code(
    http: HttpClient, *, code: str, request: AuthorizationRequest, auth: str | None = None, **overrides: str
) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.verifier,
        "client_id": request.client_id,
        **overrides,
    }
    return form_post(http, "/oauth/token", data, auth=auth)


FORM = "application/x-www-form-urlencoded"


def form_post(
    http: HttpClient,
    url: str,
    data: dict[str, Any] | list[tuple[str, str]],
    *,
    auth: str | None = None,
    **headers: Any,
) -> Any:
    """POST an application/x-www-form-urlencoded body, as OAuth clients do (RFC 6749 Appendix B)."""
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    return http.post(url, urlencode(data), content_type=FORM, **headers)


def verify_with_jwks(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``token`` against a JWK Set; returns (header, claims)."""
    keyset = jwk.JWKSet.from_json(json.dumps(jwks))
    parsed = jws.JWS()
    parsed.deserialize(token)
    header = parsed.jose_header
    key = keyset.get_key(header["kid"])
    assert key is not None, "kid not in JWKS"
    parsed.verify(key, alg=header["alg"])
    return header, json.loads(parsed.payload)
