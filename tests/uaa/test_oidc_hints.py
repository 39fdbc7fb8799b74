"""OIDC Core §3.1.2.1 ``id_token_hint`` and ``login_hint`` at the authorization endpoint.

Attackers:

- a relying party (or whoever edits its link) that sends the ID token of one user as ``id_token_hint`` to a
  browser signed in as another: with prompt=none it would get a code for the signed-in user while it
  believes it asked about the hinted one (a session mix-up: "If the End-User identified by the ID Token is
  logged in or is logged in by the request, then the Authorization Server returns a positive response;
  otherwise, it SHOULD return an error, such as login_required"). UAA answers login_required, with or
  without prompt=none, and issues no code.
- a forger sending as hint what UAA never issued as an ID token (a changed signature, another issuer's
  key, our key with another ``iss``, one of our access tokens, alg none, garbage): invalid_request. An
  expired ID token of ours is a valid hint (it is "about the End-User's current or past authenticated
  session"), as is one issued to another client (the hint narrows whom the request is for; it grants
  nothing: the code is always the signed-in user's).
- a cross-site page that links to the sign-in with a ``login_hint`` built to break out of the e-mail field
  (HTML/JS injection) or to fill the page with a huge value: the hint is pre-filled escaped, and only if it
  is at most 254 characters (an e-mail address's limit); the password field is never filled.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client as HttpClient
from jwcrypto import jwk, jwt

from accounts.mfa.policy import ACR_PWD
from tests.conftest import REDIRECT_URI, sign_in
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from tokens.formats.id_token import sign_id_token
from tokens.formats.rfc9068 import TYP as ACCESS_TOKEN_TYP
from tokens.signing import sign_jwt
from uaa.oauth.interaction import SIGNED_OUT, Ask, ClientState, Decision, SessionState, Step, decide
from uaa.oauth.models import AuthorizationCode

ISSUER = "http://testserver"


@pytest.fixture
def remembered(browser, confidential_client):
    """``user`` is signed in and consented to the client before: a request that asks nothing gets a code."""
    authorize(
        browser, AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    )
    AuthorizationCode.objects.all().delete()
    return browser


def id_token_of(user: Any, registered: Any) -> str:
    """A real ID token for ``user``, from a code flow in a browser of its own."""
    http = HttpClient()
    assert sign_in(http, user).status_code == HTTPStatus.FOUND
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    params = authorize(http, request)
    response = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    return str(response.json()["id_token"])


def our_id_token(**claims: Any) -> str:
    """An ID token signed by UAA's active RS256 key, with exactly ``claims``."""
    with transaction.atomic():
        return sign_id_token(claims=claims, algorithm="RS256")


def _request(registered: Any) -> AuthorizationRequest:
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)


def _refused(response: Any, request: AuthorizationRequest, error: str) -> dict[str, str]:
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    params = query_of(response["Location"])
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert params["error"] == error
    assert params["state"] == request.state and params["iss"] == ISSUER
    assert "code" not in params
    assert not AuthorizationCode.objects.exists()
    return params


# --- id_token_hint ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["none", None])
def test_a_hint_naming_another_user_than_the_signed_in_one_is_login_required(
    remembered, confidential_client, prompt
):
    """§3.1.2.1: the hinted End-User is not the one logged in: login_required, and no code for the signed-in
    user handed to a relying party that asked about someone else."""
    other = UserFactory()
    hint = id_token_of(other, confidential_client)
    request = _request(confidential_client)
    response = remembered.get(request.url(prompt=prompt, id_token_hint=hint))
    _refused(response, request, "login_required")


def test_the_signed_in_users_own_hint_gets_a_code_silently(remembered, confidential_client, user):
    """oidcc-id-token-hint: prompt=none with the first ID token "must return successfully immediately"."""
    hint = id_token_of(user, confidential_client)
    request = _request(confidential_client)
    params = query_of(remembered.get(request.url(prompt="none", id_token_hint=hint))["Location"])
    assert "code" in params and params["state"] == request.state


def test_an_expired_id_token_of_ours_is_still_a_hint(remembered, confidential_client, user):
    """§3.1.2.1: the hint is about "the End-User's current or past authenticated session": expired is
    accepted; its subject still has to be the signed-in user."""
    now = int(time.time())
    past = {
        "iss": settings.UAA_ISSUER,
        "aud": confidential_client.client_id,
        "iat": now - 7200,
        "exp": now - 3600,
    }
    request = _request(confidential_client)
    ours = remembered.get(request.url(prompt="none", id_token_hint=our_id_token(sub=user.sub, **past)))
    assert "code" in query_of(ours["Location"])
    AuthorizationCode.objects.all().delete()
    other = UserFactory()
    request = _request(confidential_client)
    response = remembered.get(request.url(prompt="none", id_token_hint=our_id_token(sub=other.sub, **past)))
    _refused(response, request, "login_required")


def test_a_hint_issued_to_another_client_is_a_hint_too(remembered, confidential_client, client_factory, user):
    """§3.1.2.1 "The Authorization Server need not be listed as an audience": the hint names the user; a
    matching one issued to another relying party grants nothing the session does not."""
    other_client = client_factory(name="Other RP")
    request = _request(confidential_client)
    hint = id_token_of(user, other_client)
    assert "code" in query_of(remembered.get(request.url(prompt="none", id_token_hint=hint))["Location"])


def _foreign_token(claims: dict[str, Any]) -> str:
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="attacker")
    token = jwt.JWT(header={"alg": "RS256", "kid": "attacker", "typ": "JWT"}, claims=json.dumps(claims))
    token.make_signed_token(key)
    return str(token.serialize())


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


FORGERIES = {
    "garbage": lambda user, client: "not-a-jwt",
    "alg none": lambda user, client: (
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'iss': settings.UAA_ISSUER, 'sub': user.sub})}."
    ),
    "another key": lambda user, client: _foreign_token(
        {"iss": settings.UAA_ISSUER, "sub": user.sub, "aud": client}
    ),
    "another issuer": lambda user, client: our_id_token(iss="https://evil.example", sub=user.sub, aud=client),
    "no sub": lambda user, client: our_id_token(iss=settings.UAA_ISSUER, aud=client),
    "an access token": lambda user, client: _access_token(user, client),
}


def _access_token(user: Any, client: str) -> str:
    with transaction.atomic():
        return sign_jwt(
            claims={"iss": settings.UAA_ISSUER, "sub": user.sub, "aud": client, "client_id": client},
            algorithm=settings.UAA_ACCESS_TOKEN_ALG,
            typ=ACCESS_TOKEN_TYP,
        )


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
@pytest.mark.parametrize("prompt", ["none", None])
def test_a_hint_that_is_not_an_id_token_we_issued_is_invalid_request(
    remembered, confidential_client, user, forgery, prompt
):
    """§3.1.2.1 "ID Token previously issued by the Authorization Server": anything else, even naming the
    signed-in user, is refused with invalid_request on the redirect URI, never silently ignored."""
    hint = FORGERIES[forgery](user, confidential_client.client_id)
    request = _request(confidential_client)
    response = remembered.get(request.url(prompt=prompt, id_token_hint=hint))
    params = _refused(response, request, "invalid_request")
    assert hint not in params.get("error_description", "")


def test_a_tampered_hint_is_invalid_request(remembered, confidential_client, user):
    """A real ID token of the signed-in user with its payload changed: the signature no longer verifies."""
    header, payload, signature = id_token_of(user, confidential_client).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = claims["exp"] + 3600
    request = _request(confidential_client)
    response = remembered.get(request.url(id_token_hint=f"{header}.{_b64(claims)}.{signature}"))
    _refused(response, request, "invalid_request")


def test_nobody_signed_in_with_a_hint_and_prompt_none_is_login_required(client, confidential_client, user):
    """§3.1.2.6: no session to answer silently, whatever the hint says."""
    hint = our_id_token(iss=settings.UAA_ISSUER, sub=user.sub, aud=confidential_client.client_id)
    request = _request(confidential_client)
    _refused(client.get(request.url(prompt="none", id_token_hint=hint)), request, "login_required")


def test_signing_in_as_another_user_than_the_hinted_one_is_login_required(client, confidential_client, user):
    """ "is logged in by the request": the hint asks for ``user``; whoever signs in on the way is checked
    against it when the request comes back, and another user gets login_required, not a code."""
    hint = our_id_token(iss=settings.UAA_ISSUER, sub=user.sub, aud=confidential_client.client_id)
    request = _request(confidential_client)
    url = request.url(id_token_hint=hint)
    assert client.get(url)["Location"].startswith("/accounts/login?")
    assert sign_in(client, UserFactory()).status_code == HTTPStatus.FOUND
    _refused(client.get(url), request, "login_required")


# --- login_hint -------------------------------------------------------------------------------------------
def _sign_in_page(http: HttpClient, registered: Any, login_hint: str) -> str:
    request = _request(registered)
    response = http.get(request.url(login_hint=login_hint))
    assert response.status_code == HTTPStatus.FOUND and response["Location"].startswith("/accounts/login?")
    page = http.get(response["Location"])
    assert page.status_code == HTTPStatus.OK
    return page.content.decode()


def test_login_hint_fills_in_the_e_mail_field_of_the_sign_in_page(client, confidential_client):
    """§3.1.2.1 login_hint: "Hint to the Authorization Server about the login identifier the End-User might
    use to log in"; UAA's identifier is the e-mail address."""
    page = _sign_in_page(client, confidential_client, "buffy@example.com")
    assert 'value="buffy@example.com"' in page
    assert page.count("buffy@example.com") == 1 or "next" in page  # once in the field (and in next)


@pytest.mark.parametrize(
    "payload",
    [
        '"><script>alert(1)</script>',
        'x@example.com" autofocus onfocus="alert(1)',
        "<img src=x onerror=alert(1)>",
    ],
)
def test_a_login_hint_cannot_inject_markup_into_the_sign_in_page(client, confidential_client, payload):
    """The hint is escaped as the field's value: no element or attribute of the attacker's."""
    page = _sign_in_page(client, confidential_client, payload)
    assert "<script>alert(1)" not in page and "<img src=x" not in page and 'onfocus="alert' not in page


def test_a_huge_login_hint_is_not_filled_in(client, confidential_client):
    """Longer than an e-mail address can be (254): ignored, not an error."""
    page = _sign_in_page(client, confidential_client, "a" * 243 + "@example.com")
    assert 'name="email"' in page and "a" * 243 + "@" not in page.split('name="email"')[1].split(">")[0]


def test_the_sign_in_page_takes_the_hint_of_an_authorization_request_only(client):
    """A ``next`` that is not the authorization endpoint fills in nothing: the field is not a parameter of
    the sign-in page for any link to set."""
    page = client.get("/accounts/login?" + urlencode({"next": "/accounts/?login_hint=x@example.com"}))
    assert 'value="x@example.com"' not in page.content.decode()
    page = client.get("/accounts/login?" + urlencode({"login_hint": "x@example.com"}))
    assert 'value="x@example.com"' not in page.content.decode()


# --- the decision, as a pure function -----------------------------------------------------------------------
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SIGNED_IN_AS_A = SessionState(signed_in=True, auth_time=NOW, acr=ACR_PWD, reauthenticated=False, sub="a")
ON_RECORD = ClientState(mfa_required=False, consent_on_record=True)


@pytest.mark.parametrize(
    ("hinted", "prompts", "expected"),
    [
        ("a", frozenset(), Decision(step=Step.ISSUE)),
        ("a", frozenset({"none"}), Decision(step=Step.ISSUE)),
        (None, frozenset({"none"}), Decision(step=Step.ISSUE)),
        ("b", frozenset(), Decision(step=Step.SIGN_IN, error="login_required")),
        ("b", frozenset({"none"}), Decision(step=Step.SIGN_IN, error="login_required")),
        ("b", frozenset({"consent"}), Decision(step=Step.SIGN_IN, error="login_required")),
        # prompt=login: the sign-in the request asks for comes first; whoever signs in is checked after
        ("b", frozenset({"login"}), Decision(step=Step.SIGN_IN, demand_reauthentication=True)),
    ],
)
def test_decide_with_a_hint(hinted, prompts, expected):
    """``interaction.decide``: the hinted sub against the session's, once the session is one the request
    accepts."""
    ask = Ask(prompts=prompts, max_age=None, acr_values=(), hinted_sub=hinted)
    assert decide(ask=ask, session=SIGNED_IN_AS_A, client=ON_RECORD, now=NOW) == expected


def test_decide_with_a_hint_and_nobody_signed_in_asks_for_a_sign_in():
    ask = Ask(prompts=frozenset(), max_age=None, acr_values=(), hinted_sub="b")
    assert decide(ask=ask, session=SIGNED_OUT, client=ON_RECORD, now=NOW) == Decision(step=Step.SIGN_IN)


def test_a_hint_whose_key_is_revoked_while_the_consent_page_is_open_is_invalid_request(
    browser, confidential_client, user
):
    """Red team, issue 11 round 2: the consent page was shown for a valid hint; its signing key was revoked
    before the answer. The answer re-reads the request and the hint no longer verifies: that was a 500
    (``InvalidHint`` escaped ``form_valid``); it is ``invalid_request`` on the redirect, as on the GET."""
    from django.utils import timezone

    from tokens.rotation import revoke_signing_key

    hint = id_token_of(user, confidential_client)
    request = _request(confidential_client)
    page = browser.get(request.url(prompt="consent", id_token_hint=hint))
    assert page.status_code == HTTPStatus.OK, page.content[:300]
    header = json.loads(base64.urlsafe_b64decode(hint.split(".")[0] + "=="))
    revoke_signing_key(kid=header["kid"], now=timezone.now(), reason="leaked")
    form = page.context["form"]
    answer = {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}
    browser.raise_request_exception = False
    response = browser.post("/oauth/authorize", answer)
    _refused(response, request, "invalid_request")
