"""A relying party we did not write, against a live server: Authlib drives OAuth, PyJWT and joserfc verify.

The server runs in a thread (pytest-django ``live_server``) and is reached over real HTTP. The user signs in
(password, then a TOTP code) and consents through the real HTML pages with a ``requests.Session`` (no
browser); Authlib's ``OAuth2Session`` builds the authorization URL with PKCE S256 (RFC 7636), redeems the
code, refreshes and calls userinfo; the JWTs are verified against the JWK Set fetched from ``jwks_uri``
with PyJWT (access tokens, RFC 9068) and joserfc (ID tokens, OIDC Core §3.1.3.7). Nothing here imports
UAA's token code.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core.util import create_half_hash
from django.conf import settings
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from accounts.models import User
from tests.conftest import REDIRECT_URI, RegisteredClient
from tests.factories import PASSWORD, totp_code

SCOPE = "openid profile email offline_access"
KEY_TYPES = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}  # RFC 7518 §6.1, RFC 8037 §2
API = "https://api.example.com"
TIMEOUT = 10


# --- the live server and its published metadata -------------------------------------------------
@pytest.fixture
def issuer(live_server: Any, settings: Any) -> str:
    """Make the live server's own URL the issuer, so ``iss`` everywhere matches what discovery says."""
    url = live_server.url.rstrip("/")
    settings.UAA_ISSUER = url
    # Assigning through the fixture sends setting_changed, on which DOT reloads its oauth2_settings.
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": url}
    return url


@pytest.fixture
def discovery(issuer: str) -> dict[str, Any]:
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT)
    assert response.status_code == HTTPStatus.OK, response.text
    return response.json()


@pytest.fixture
def jwks(discovery: dict[str, Any]) -> dict[str, Any]:
    response = requests.get(discovery["jwks_uri"], timeout=TIMEOUT)
    assert response.status_code == HTTPStatus.OK, response.text
    return response.json()


@pytest.fixture
def jwks_client(discovery: dict[str, Any]) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False, cache_jwk_set=False, timeout=TIMEOUT)


# --- a user agent: real sign-in page and consent page, parsed from HTML ----------------------------
class _Forms(HTMLParser):
    """Every <form> on a page: its action and the name/value pairs of its inputs and named buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""), "fields": {}, "buttons": {}})
        elif self.forms and tag == "input" and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")
        elif self.forms and tag == "button" and attributes.get("name"):
            self.forms[-1]["buttons"][attributes["name"]] = attributes.get("value", "")


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def sign_in_and_consent(authorization_url: str, *, email: str, password: str = PASSWORD) -> str:
    """Follow the authorization URL as a browser would: sign in, approve; returns the final Location."""
    with requests.Session() as agent:
        return _sign_in_and_consent(agent, authorization_url, email=email, password=password)


def _sign_in_and_consent(
    agent: requests.Session, authorization_url: str, *, email: str, password: str
) -> str:
    page = agent.get(authorization_url, timeout=TIMEOUT)
    assert page.status_code == HTTPStatus.OK, page.text[:500]
    assert urlsplit(page.url).path == "/accounts/login", page.url
    (login,) = forms_of(page.text)
    assert login["fields"]["csrfmiddlewaretoken"], "the sign-in form carries a CSRF token"
    assert login["fields"]["next"].startswith("/oauth/authorize?")
    fields = {**login["fields"], "email": email, "password": password}
    consent_page = agent.post(urljoin(page.url, login["action"]), data=fields, timeout=TIMEOUT)
    assert consent_page.status_code == HTTPStatus.OK, consent_page.text[:500]
    if urlsplit(consent_page.url).path == "/accounts/mfa":  # the second factor: a code from the user's app
        (factor,) = [form for form in forms_of(consent_page.text) if form["fields"].get("method") == "totp"]
        code = totp_code(User.objects.get(email=email))
        data = {**factor["fields"], "code": code}
        consent_page = agent.post(urljoin(consent_page.url, factor["action"]), data=data, timeout=TIMEOUT)
        assert consent_page.status_code == HTTPStatus.OK, consent_page.text[:500]
    assert urlsplit(consent_page.url).path == "/oauth/authorize"
    (consent,) = [form for form in forms_of(consent_page.text) if "allow" in form["buttons"]]
    data = {**consent["fields"], "allow": consent["buttons"]["allow"]}
    # A form without an action posts back to the page's own URL; the redirect goes to an unreachable RP.
    approved = agent.post(
        urljoin(consent_page.url, consent["action"]), data=data, allow_redirects=False, timeout=TIMEOUT
    )
    assert approved.status_code == HTTPStatus.FOUND, approved.text[:500]
    return approved.headers["Location"]


# --- the relying party: Authlib --------------------------------------------------------------------
@dataclass
class RelyingParty:
    session: OAuth2Session
    client_id: str
    authorization_url: str
    state: str
    code_verifier: str
    nonce: str


@pytest.fixture
def oauth_session() -> Iterator[Callable[..., OAuth2Session]]:
    """Authlib sessions, closed after the test so that the live server's request threads end.

    Each kept-alive connection is served by a thread that holds a database connection until the socket
    closes; PostgreSQL will not drop the test database while such a session is open.
    """
    opened: list[OAuth2Session] = []

    def make(**kwargs: Any) -> OAuth2Session:
        opened.append(OAuth2Session(**kwargs))
        return opened[-1]

    yield make
    for session in opened:
        session.close()


def start_code_flow(
    oauth_session: Callable[..., OAuth2Session],
    discovery: dict[str, Any],
    registered: RegisteredClient,
    *,
    auth_method: str,
) -> RelyingParty:
    session = oauth_session(
        client_id=registered.client_id,
        client_secret=registered.secret,
        token_endpoint_auth_method=auth_method,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    code_verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )
    return RelyingParty(session, registered.client_id, url, state, code_verifier, nonce)


def finish_code_flow(rp: RelyingParty, discovery: dict[str, Any], *, location: str) -> dict[str, Any]:
    return dict(
        rp.session.fetch_token(
            discovery["token_endpoint"], authorization_response=location, code_verifier=rp.code_verifier
        )
    )


@pytest.fixture
def run_code_flow(
    oauth_session: Callable[..., OAuth2Session], discovery: dict[str, Any], user: Any
) -> Callable[..., tuple[RelyingParty, str, dict[str, Any]]]:
    def run(registered: RegisteredClient, *, auth_method: str) -> tuple[RelyingParty, str, dict[str, Any]]:
        rp = start_code_flow(oauth_session, discovery, registered, auth_method=auth_method)
        location = sign_in_and_consent(rp.authorization_url, email=user.email)
        return rp, location, finish_code_flow(rp, discovery, location=location)

    return run


# --- verification with JOSE libraries we did not write ---------------------------------------------
def verify_access_token(
    token: str, jwks_client: jwt.PyJWKClient, *, issuer: str, audience: str
) -> dict[str, Any]:
    """RFC 9068 §4 with PyJWT: typ at+jwt, signature by a JWKS key, iss, aud and exp."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert header["alg"] == settings.UAA_ACCESS_TOKEN_ALG  # ES256 unless configured otherwise
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key,
        algorithms=[settings.UAA_ACCESS_TOKEN_ALG],
        issuer=issuer,
        audience=audience,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]},
    )


def verify_id_token(
    token: str, jwks: dict[str, Any], *, issuer: str, client_id: str, nonce: str, access_token: str
) -> dict[str, Any]:
    """OIDC Core §3.1.3.7 with joserfc: signature by a JWKS key, iss, aud, exp, iat, nonce and at_hash."""
    decoded = jose_jwt.decode(token, KeySet.import_key_set(cast(Any, jwks)), algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256"
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
        at_hash={"essential": True, "value": create_half_hash(access_token, "RS256").decode()},
    ).validate(decoded.claims)
    return dict(decoded.claims)


def oauth_error_of(call: Callable[[], object]) -> str:
    """The error code of the OAuthError that Authlib raises for ``call``.

    Unlike ``pytest.raises``, this keeps no traceback: its frames hold the HTTP response and, through
    urllib3's pool, the kept-alive socket, which only the cyclic garbage collector would then release.
    """
    try:
        call()
    except OAuthError as error:
        return str(error.error)
    raise AssertionError("the request was expected to fail")


def with_broken_signature(token: str) -> str:
    """``token`` with one bit of its signature flipped (mid-signature: a last base64url character may be
    only padding bits)."""
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([header, payload, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")])


# --- the tests -------------------------------------------------------------------------------------
def test_discovery_on_the_live_server_names_it_as_the_issuer(issuer, discovery):
    """OIDC Discovery 1.0 §4.3: the issuer MUST be identical to the URL the document was fetched from."""
    assert discovery["issuer"] == issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert discovery[endpoint].startswith(f"{issuer}/")
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert discovery["authorization_response_iss_parameter_supported"] is True


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_runs_code_flow_with_pkce_and_both_tokens_verify_against_the_jwks(
    auth_method, run_code_flow, confidential_client, user, issuer, discovery, jwks, jwks_client
):
    """RFC 6749 §4.1, RFC 7636 S256, RFC 9207 iss, RFC 9068 access token, OIDC Core §3.1.3.7 ID token."""
    assert auth_method in discovery["token_endpoint_auth_methods_supported"]
    rp, location, token = run_code_flow(confidential_client, auth_method=auth_method)

    assert location.startswith(f"{REDIRECT_URI}?")
    params = query_of(location)
    assert params["state"] == [rp.state]
    assert params["iss"] == [issuer]  # RFC 9207 §2.4: the client compares iss with the issuer it expects
    assert "error" not in params
    assert token["token_type"].lower() == "bearer"
    assert token["refresh_token"]

    access = verify_access_token(token["access_token"], jwks_client, issuer=issuer, audience=issuer)
    assert access["sub"] == str(user.pk)
    assert access["client_id"] == confidential_client.client_id
    assert set(access["scope"].split()) == set(SCOPE.split())

    id_claims = verify_id_token(
        token["id_token"],
        jwks,
        issuer=issuer,
        client_id=confidential_client.client_id,
        nonce=rp.nonce,
        access_token=token["access_token"],
    )
    assert id_claims["sub"] == str(user.pk)

    info = rp.session.get(discovery["userinfo_endpoint"], timeout=TIMEOUT)  # Authlib adds the bearer token
    assert info.status_code == HTTPStatus.OK, info.text
    assert info.json()["sub"] == id_claims["sub"]  # OIDC Core §5.3.2: sub MUST match the ID token's
    assert info.json()["email"] == user.email


def test_token_request_with_the_wrong_code_verifier_is_refused(
    oauth_session, discovery, confidential_client, user
):
    """RFC 7636 §4.6: if the values are not equal, an "invalid_grant" error MUST be returned."""
    rp = start_code_flow(oauth_session, discovery, confidential_client, auth_method="client_secret_basic")
    location = sign_in_and_consent(rp.authorization_url, email=user.email)
    error = oauth_error_of(
        lambda: rp.session.fetch_token(
            discovery["token_endpoint"], authorization_response=location, code_verifier=rp.code_verifier[::-1]
        )
    )
    assert error == "invalid_grant"


def test_authlib_refresh_rotates_the_refresh_token_and_the_old_one_is_refused(
    run_code_flow, confidential_client, user, issuer, discovery, jwks_client
):
    """RFC 9700 §4.14.2: a rotated refresh token is refused; replaying it revokes the whole token family."""
    rp, _location, first = run_code_flow(confidential_client, auth_method="client_secret_basic")

    second = dict(rp.session.refresh_token(discovery["token_endpoint"], refresh_token=first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    refreshed = verify_access_token(second["access_token"], jwks_client, issuer=issuer, audience=issuer)
    assert refreshed["sub"] == str(user.pk)
    assert set(refreshed["scope"].split()) == set(SCOPE.split())
    info = rp.session.get(discovery["userinfo_endpoint"], timeout=TIMEOUT)  # the session now holds `second`
    assert info.status_code == HTTPStatus.OK, info.text

    token_endpoint = discovery["token_endpoint"]
    replayed = oauth_error_of(
        lambda: rp.session.refresh_token(token_endpoint, refresh_token=first["refresh_token"])
    )
    assert replayed == "invalid_grant"
    revoked = oauth_error_of(
        lambda: rp.session.refresh_token(token_endpoint, refresh_token=second["refresh_token"])
    )
    assert revoked == "invalid_grant"


def test_public_client_runs_code_flow_with_pkce_and_no_secret(
    run_code_flow, public_client, user, issuer, discovery, jwks, jwks_client
):
    """RFC 7636 §1 and OAuth 2.0 token_endpoint_auth_method "none": PKCE stands in for the client secret."""
    assert public_client.secret is None
    assert "none" in discovery["token_endpoint_auth_methods_supported"]
    rp, location, token = run_code_flow(public_client, auth_method="none")

    assert query_of(location)["iss"] == [issuer]
    access = verify_access_token(token["access_token"], jwks_client, issuer=issuer, audience=issuer)
    assert access["client_id"] == public_client.client_id
    id_claims = verify_id_token(
        token["id_token"],
        jwks,
        issuer=issuer,
        client_id=public_client.client_id,
        nonce=rp.nonce,
        access_token=token["access_token"],
    )
    assert id_claims["sub"] == access["sub"] == str(user.pk)


def test_authlib_client_credentials_grant_for_a_service_client(
    oauth_session, service_client, issuer, discovery, jwks_client
):
    """RFC 6749 §4.4: the client acts for itself; no refresh token (§4.4.3) and no ID token."""
    session = oauth_session(
        client_id=service_client.client_id,
        client_secret=service_client.secret,
        token_endpoint_auth_method="client_secret_basic",
    )
    token = dict(session.fetch_token(discovery["token_endpoint"], grant_type="client_credentials"))

    assert "refresh_token" not in token
    assert "id_token" not in token
    access = verify_access_token(token["access_token"], jwks_client, issuer=issuer, audience=API)
    assert access["sub"] == access["client_id"] == service_client.client_id


def test_token_header_kid_names_a_key_in_the_published_jwks(
    run_code_flow, confidential_client, discovery, jwks
):
    """RFC 7515 §4.1.4 / RFC 7517 §4.5: the kid in each token's header selects a key of the JWK Set."""
    _rp, _location, token = run_code_flow(confidential_client, auth_method="client_secret_basic")
    published = {key["kid"]: key for key in jwks["keys"]}
    expected = {"access_token": settings.UAA_ACCESS_TOKEN_ALG, "id_token": "RS256"}  # the client's default
    for name, alg in expected.items():
        header = jwt.get_unverified_header(token[name])
        assert header["kid"] in published, name
        key = published[header["kid"]]
        assert header["alg"] == alg, name
        assert (key["kty"], key["use"], key["alg"]) == (KEY_TYPES[alg], "sig", alg), name
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # only the public half is published

    # The key PyJWT selects from the set by that kid is the one whose signature verifies.
    kid = jwt.get_unverified_header(token["access_token"])["kid"]
    selected = jwt.PyJWKSet.from_dict(jwks)[kid]
    assert selected.key_id == kid
    claims = jwt.decode(
        token["access_token"],
        selected,
        algorithms=[settings.UAA_ACCESS_TOKEN_ALG],
        issuer=discovery["issuer"],
        audience=discovery["issuer"],
    )
    assert claims["client_id"] == confidential_client.client_id


def test_access_token_with_a_broken_signature_fails_verification_and_is_refused(
    run_code_flow, confidential_client, issuer, discovery, jwks, jwks_client
):
    """RFC 7515 §5.2: a JWS whose signature does not validate MUST be rejected, by PyJWT and by the server."""
    _rp, _location, token = run_code_flow(confidential_client, auth_method="client_secret_basic")
    broken = with_broken_signature(token["access_token"])
    assert broken != token["access_token"]

    with pytest.raises(jwt.InvalidSignatureError):
        verify_access_token(broken, jwks_client, issuer=issuer, audience=issuer)
    refused = requests.get(
        discovery["userinfo_endpoint"], headers={"Authorization": f"Bearer {broken}"}, timeout=TIMEOUT
    )
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    with pytest.raises(BadSignatureError):  # the same for the ID token, with joserfc
        jose_jwt.decode(
            with_broken_signature(token["id_token"]), KeySet.import_key_set(jwks), algorithms=["RS256"]
        )
    # The intact token still verifies: only the signature was touched.
    verify_access_token(token["access_token"], jwks_client, issuer=issuer, audience=issuer)
