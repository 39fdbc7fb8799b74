"""The per-client PKCE policy (``Client.require_pkce``, uaa/oauth/rfc7636.py): RFC 9700 §2.1.1.

PKCE is required of every client by default. RFC 9700 §2.1.1 lets a confidential OpenID Connect client rely
on ``nonce`` instead, so a confidential client with ``require_pkce`` off may leave PKCE out of an OpenID
Connect request (``openid`` in scope) that carries a ``nonce``, and of no other request.

Attackers: another registered client, or a network attacker, holding a code stolen from the client (a
leaked redirect, a log) and injecting it into its own session with the client (code injection, RFC 9700
§4.5). PKCE binds the code to the client's session; without it only the ID token's ``nonce`` does, which
the client checks. So: a public client can never turn PKCE off (it has no secret to stop the attacker
redeeming the code itself); a request without PKCE must be one whose ID token carries a nonce; ``plain``
stays refused; a code issued with a challenge needs its verifier; and a verifier sent for a code issued
without a challenge is refused (RFC 9700 §4.8.2, PKCE downgrade), where django-oauth-toolkit ignores it.
"""

from __future__ import annotations

import io
import json
from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.test import Client as HttpClient
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from tests.conftest import REDIRECT_URI
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, form_post, pkce_pair, query_of
from tests.uaa.endpoints import unverified_claims
from tokens.models import LedgerRecord
from uaa.oauth import rfc7636
from uaa.oauth.models import Client
from uaa.oauth.services import register_client

NO_PKCE = {"code_challenge": None, "code_challenge_method": None}
ISSUER = "http://testserver"


@pytest.fixture
def nonce_client(client_factory):
    """A confidential client that may use nonce instead of PKCE (RFC 9700 §2.1.1)."""
    return client_factory(name="Certification RP", require_pkce=False)


def _request(registered, **fields):
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **fields)


def _refused(response, request, error="invalid_request"):
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    params = query_of(response["Location"])
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert params["error"] == error, params
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params
    return params


def _exchange(registered, request, code, **overrides):
    """The token request; an override of None leaves the parameter out."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.verifier,
        **overrides,
    }
    sent = {name: value for name, value in data.items() if value is not None}
    return form_post(HttpClient(), "/oauth/token", sent, auth=registered.basic)


# --- who may turn it off --------------------------------------------------------------------------------


def test_every_client_requires_pkce_unless_told_otherwise(confidential_client, public_client):
    assert confidential_client.client.require_pkce
    assert public_client.client.require_pkce
    assert Client._meta.get_field("require_pkce").default is True


def test_a_public_client_without_pkce_is_refused_by_the_service(db):
    with pytest.raises(ValidationError) as refused:
        register_client(
            name="SPA",
            client_type=Client.CLIENT_PUBLIC,
            grant_type=Client.GRANT_AUTHORIZATION_CODE,
            redirect_uris=[REDIRECT_URI],
            require_pkce=False,
        )
    assert "require_pkce" in refused.value.message_dict
    assert not Client.objects.exists()


def test_a_public_client_without_pkce_is_refused_by_the_model(db):
    client = Client(
        name="SPA",
        client_type=Client.CLIENT_PUBLIC,
        authorization_grant_type=Client.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
        require_pkce=False,
    )
    with pytest.raises(ValidationError):
        client.full_clean(exclude=["client_secret", "client_id"])


def test_the_database_refuses_a_public_client_without_pkce(public_client):
    """The check constraint: neither a save past clean() nor an update() turns it off."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Client.objects.filter(pk=public_client.client.pk).update(require_pkce=False)
    client = public_client.client
    client.require_pkce = False
    with pytest.raises(IntegrityError), transaction.atomic():
        client.save()
    client.refresh_from_db()
    assert client.require_pkce


def test_turning_a_public_client_without_pkce_into_a_public_one_is_refused(nonce_client):
    client = nonce_client.client
    client.client_type = Client.CLIENT_PUBLIC
    with pytest.raises(ValidationError):
        client.full_clean(exclude=["client_secret", "client_id"])


def test_create_client_requires_pkce_unless_asked(db):
    def create(*args):
        out = io.StringIO()
        call_command(
            "create_client", "--name", "RP", "--redirect-uri", REDIRECT_URI, *args, "--json", stdout=out
        )
        return Client.objects.get(client_id=json.loads(out.getvalue())["client_id"])

    assert create().require_pkce
    assert not create("--no-require-pkce").require_pkce
    with pytest.raises(CommandError, match="require_pkce"):
        create("--public", "--no-require-pkce")


def test_the_registration_record_carries_the_policy(client_factory):
    off = client_factory(require_pkce=False)
    on = client_factory()
    details = {
        body["client_id"]: body["detail"]
        for body in map(
            json.loads, LedgerRecord.objects.filter(event="client.registered").values_list("body", flat=True)
        )
    }
    assert details[off.client_id]["require_pkce"] is False
    assert details[on.client_id]["require_pkce"] is True


# --- admin ---------------------------------------------------------------------------------------------


@pytest.fixture
def admin_browser(db):
    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    return http


def _change_form(http, client):
    page = http.get(f"/admin/oauth/client/{client.pk}/change/")
    assert page.status_code == HTTPStatus.OK
    assert b"Require PKCE" in page.content
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data.update(allowed_origins="", trusted="", requires_mfa="")
    return {name: value for name, value in data.items() if value is not None}


def test_the_admin_shows_edits_and_records_the_policy(admin_browser, confidential_client):
    client = confidential_client.client
    data = _change_form(admin_browser, client) | {"require_pkce": "False"}
    response = admin_browser.post(f"/admin/oauth/client/{client.pk}/change/", data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:2000]
    client.refresh_from_db()
    assert not client.require_pkce
    changes = [
        json.loads(body)["detail"]
        for body in LedgerRecord.objects.filter(event="admin.change").values_list("body", flat=True)
    ]
    assert {
        "action": "change",
        "model": "oauth.client",
        "object_id": str(client.pk),
        "fields": ["Require PKCE"],
    } in changes
    assert admin_browser.get("/admin/oauth/client/?require_pkce__exact=0").status_code == HTTPStatus.OK


def test_the_admin_refuses_a_public_client_without_pkce(admin_browser, public_client):
    client = public_client.client
    data = _change_form(admin_browser, client) | {"require_pkce": "False"}
    response = admin_browser.post(f"/admin/oauth/client/{client.pk}/change/", data)
    assert response.status_code == HTTPStatus.OK  # the form again, with the error
    assert b"always requires PKCE" in response.content
    client.refresh_from_db()
    assert client.require_pkce


def test_an_admin_form_posted_without_the_field_keeps_pkce_required(admin_browser, confidential_client):
    """Fail closed: a checkbox left out of a post would mean off; this field left out means required."""
    client = confidential_client.client
    data = _change_form(admin_browser, client)
    data.pop("require_pkce")
    client.require_pkce = False
    client.save()
    response = admin_browser.post(f"/admin/oauth/client/{client.pk}/change/", data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:2000]
    client.refresh_from_db()
    assert client.require_pkce


# --- the authorization endpoint ------------------------------------------------------------------------


def test_an_openid_request_with_a_nonce_may_leave_pkce_out(browser, nonce_client):
    """RFC 9700 §2.1.1: the nonce binds the ID token to the client's session instead."""
    request = _request(nonce_client)
    params = authorize(browser, request, **NO_PKCE)
    assert "code" in params, params
    response = _exchange(nonce_client, request, params["code"], code_verifier=None)
    assert response.status_code == HTTPStatus.OK, response.content
    assert unverified_claims(response.json()["id_token"])["nonce"] == request.nonce


def test_without_pkce_through_the_consent_page_too(browser, nonce_client):
    """The consent page's answer is checked with the scopes granted, as the GET was."""
    request = _request(nonce_client)
    page = browser.get(request.url(**NO_PKCE))
    assert page.status_code == HTTPStatus.OK  # the consent page
    params = authorize(browser, request, **NO_PKCE)
    assert "code" in params


def test_a_trusted_client_without_pkce_skips_the_consent_page(browser, client_factory):
    registered = client_factory(trusted=True, require_pkce=False)
    request = _request(registered)
    params = authorize(browser, request, consent=False, **NO_PKCE)
    assert _exchange(registered, request, params["code"], code_verifier=None).status_code == HTTPStatus.OK


@pytest.mark.parametrize("nonce", [None, ""])
def test_without_a_nonce_pkce_is_required(browser, nonce_client, nonce):
    request = _request(nonce_client)
    _refused(browser.get(request.url(nonce=nonce, **NO_PKCE)), request)


@pytest.mark.parametrize("scope", ["profile email", "openidx profile", "OPENID"])
def test_without_openid_pkce_is_required(browser, nonce_client, scope):
    request = _request(nonce_client, scope=scope)
    _refused(browser.get(request.url(**NO_PKCE)), request)


@pytest.mark.parametrize(
    "sent",
    [
        {"code_challenge_method": "plain"},  # with a challenge
        {"code_challenge_method": None},  # oauthlib's default: plain
        {"code_challenge": None, "code_challenge_method": "plain"},  # the method alone
        {"code_challenge": None},  # S256 without a challenge
        {"code_challenge": "short"},
        {"code_challenge_method": "S512"},
    ],
)
def test_pkce_that_is_sent_is_checked_even_when_it_may_be_left_out(browser, nonce_client, sent):
    """``plain`` stays refused everywhere; a request that sends PKCE is checked like any other."""
    request = _request(nonce_client)
    _refused(browser.get(request.url(**sent)), request)


def test_a_code_issued_with_a_challenge_needs_its_verifier(browser, nonce_client):
    request = _request(nonce_client)
    params = authorize(browser, request)
    missing = _exchange(nonce_client, request, params["code"], code_verifier=None)
    assert missing.status_code == HTTPStatus.BAD_REQUEST
    assert missing.json()["error"] == "invalid_request"
    other, _ = pkce_pair()
    wrong = _exchange(nonce_client, request, params["code"], code_verifier=other)
    assert wrong.status_code == HTTPStatus.BAD_REQUEST
    assert wrong.json()["error"] == "invalid_grant"
    assert _exchange(nonce_client, request, params["code"]).status_code == HTTPStatus.OK


def test_a_verifier_for_a_code_issued_without_pkce_is_refused(browser, nonce_client):
    """RFC 9700 §4.8.2: "if there was no code_challenge in the authorization request, a request to the token
    endpoint containing a code_verifier is rejected". django-oauth-toolkit ignored the verifier."""
    request = _request(nonce_client)
    params = authorize(browser, request, **NO_PKCE)
    injected = _exchange(nonce_client, request, params["code"])  # with request.verifier
    assert injected.status_code == HTTPStatus.BAD_REQUEST, injected.content
    assert injected.json()["error"] == "invalid_grant"
    assert "access_token" not in injected.json()


def test_a_code_issued_without_pkce_is_not_redeemed_once_the_policy_is_back_on(browser, nonce_client):
    request = _request(nonce_client)
    params = authorize(browser, request, **NO_PKCE)
    Client.objects.filter(pk=nonce_client.client.pk).update(require_pkce=True)
    response = _exchange(nonce_client, request, params["code"], code_verifier=None)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] in ("invalid_request", "invalid_grant")


def test_a_default_client_still_needs_pkce_on_an_openid_request_with_a_nonce(browser, confidential_client):
    request = _request(confidential_client)
    _refused(browser.get(request.url(**NO_PKCE)), request)


# --- the rules, as functions ----------------------------------------------------------------------------

S256 = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


class _Client:
    def __init__(self, client_type="confidential", require_pkce=True):
        self.client_type, self.require_pkce = client_type, require_pkce


@pytest.mark.parametrize(
    ("client", "scopes", "nonce", "required"),
    [
        (None, ["openid"], "n", True),
        (_Client(), ["openid"], "n", True),
        (_Client("public", require_pkce=False), ["openid"], "n", True),  # never, even if stored so
        (_Client(require_pkce=False), ["openid", "profile"], "n", False),
        (_Client(require_pkce=False), ["openid"], "", True),
        (_Client(require_pkce=False), ["openid"], None, True),
        (_Client(require_pkce=False), ["profile"], "n", True),
        (_Client(require_pkce=False), [], "n", True),
    ],
)
def test_pkce_required(client, scopes, nonce, required):
    assert rfc7636.pkce_required(client=client, scopes=scopes, nonce=nonce) is required


@pytest.mark.parametrize(
    ("method", "challenge", "description"),
    [
        (None, None, "PKCE is required"),
        ("plain", S256, "PKCE is required"),
        ("plain", None, "PKCE is required"),
        ("S256", "short", "code_challenge"),
        ("S256", None, "code_challenge"),
    ],
)
def test_check_authorization_request_refusals(method, challenge, description):
    """The rows check_request had for PKCE (tests/uaa/test_interaction.py), now the server's check."""
    with pytest.raises(oauthlib_errors.InvalidRequestError) as refused:
        rfc7636.check_authorization_request(
            method=method, challenge=challenge, client=None, scopes=["openid"], nonce="n"
        )
    assert description in refused.value.description


def test_check_authorization_request_accepts_s256_and_the_policy_allowed_omission():
    rfc7636.check_authorization_request(method="S256", challenge=S256, client=None, scopes=[], nonce=None)
    rfc7636.check_authorization_request(
        method=None, challenge=None, client=_Client(require_pkce=False), scopes=["openid"], nonce="n"
    )
