"""GrantContext (uaa/oauth/grant_context.py): attached once, with defaults, never a request parameter."""

from __future__ import annotations

import json
from http import HTTPStatus

from oauthlib.common import Request as OAuthlibRequest

from tests.uaa.endpoints import token_request
from tokens.models import LedgerRecord
from uaa.oauth.grant_context import ATTRIBUTE, GrantContext, for_authorization, grant_context


def oauthlib_request(body: str = "") -> OAuthlibRequest:
    return OAuthlibRequest("https://uaa.example/oauth/token", http_method="POST", body=body)


def test_the_context_is_attached_on_first_use_and_is_the_same_afterwards():
    request = oauthlib_request()
    first = grant_context(request)
    first.acr = "mfa"
    assert grant_context(request) is first
    assert grant_context(request).acr == "mfa"


def test_a_new_context_knows_nothing():
    assert grant_context(oauthlib_request()) == GrantContext(
        session_auth=None,
        consent="",
        code=None,
        auth_time=None,
        amr=[],
        acr="",
        sid="",
        access_token_exp=None,
        access_token_checksum="",
        refresh_token_family=None,
        client_assertion="",
    )


def test_each_context_has_its_own_amr_list():
    one, other = grant_context(oauthlib_request()), grant_context(oauthlib_request())
    one.amr.append("pwd")
    assert other.amr == []


def test_a_request_parameter_of_the_attributes_name_is_not_the_context():
    """oauthlib's Request answers unknown attributes with request parameters; the context is never one."""
    request = oauthlib_request(f"{ATTRIBUTE}=forged&acr=forged")
    assert grant_context(request) == GrantContext()


def test_an_authorization_responses_context_reaches_the_request_through_its_credentials():
    """oauthlib sets every credential as an attribute of its request (AuthorizationEndpoint)."""
    credentials: dict[str, object] = {"client_id": "c"}
    session_auth = {"auth_time": None, "amr": ["pwd"], "acr": "", "sid": "s"}
    for_authorization(credentials, session_auth=session_auth, consent="given")
    request = oauthlib_request()
    for name, value in credentials.items():
        setattr(request, name, value)
    assert grant_context(request) == GrantContext(session_auth=session_auth, consent="given")


def test_sign_in_parameters_sent_by_a_client_do_not_reach_its_audit_record(service_client):
    """A client cannot write the sign-in (amr, acr), a refresh token family or evidence into the ledger
    by sending them as parameters (they were read as attributes of oauthlib's request before)."""
    response = token_request(
        service_client,
        {
            "grant_type": "client_credentials",
            "uaa_amr": "pwd",
            "uaa_acr": "mfa",
            "uaa_refresh_token_family": "forged",
            "uaa_client_assertion": "forged",
        },
    )
    assert response.status_code == HTTPStatus.OK, response.content
    record = json.loads(LedgerRecord.objects.filter(event="token.issued").latest("pk").body)
    assert record.get("amr", []) == []
    assert record.get("acr", "") == ""
    assert "refresh_token_family" not in record.get("detail", {})
    assert record.get("evidence", {}) == {}
