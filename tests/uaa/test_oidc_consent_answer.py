"""The consent form's answer (OIDC Core §3.1.2.4, RFC 6749 §4.1.1 to §4.1.2): it is checked against the
request UAA showed the page for, which UAA keeps server-side, never against the form's own copies.

Attackers:

- the signed-in user, editing their own consent form (hidden fields are theirs to change): they must
  not get, or have remembered, more than the page showed (another scope, another client), nor change
  what the client's request bound (redirect URI, PKCE challenge, resources, state);
- someone at a browser signed in with a password only (``UAA_MFA_REQUIRED=false``) or signed in long
  ago, posting the consent form directly, or answering a page shown earlier: every requirement of the
  request (``acr_values``, the client's "requires MFA", ``max_age``, ``prompt=login``) is checked again
  on the answer, by the same function as on the GET.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from tests.conftest import LOGIN, REDIRECT_URI, sign_in
from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import AuthorizationRequest, exchange_code, pkce_pair, query_of
from uaa.oauth.models import AuthorizationCode, Consent

ISSUER = "http://testserver"
MFA_ACR = "urn:uaa:acr:mfa"
STEP_UP = "/accounts/mfa/step-up"
API = "https://api.example.com"
REPORTS = "https://reports.example.com"


def _request(registered, **kwargs):
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **kwargs)


def _page(http, url):
    page = http.get(url)
    assert page.status_code == HTTPStatus.OK, page.get("Location")
    assert page.templates[0].name == "oauth/consent.html"
    return page


def _answer(page, **changes):
    """The form exactly as the page rendered it, "Allow" pressed, with ``changes`` applied."""
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data["allow"] = "Authorize"
    data.update(changes)
    return data


def _assert_error_redirect(response, request, error):
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == error
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params


def _assert_no_code(response):
    assert "code=" not in response.get("Location", "")
    assert not AuthorizationCode.objects.exists()


# --- W2: the answer may narrow what was shown, never widen it --------------------------------------


@pytest.mark.parametrize("added", ["openid profile email", "openid offline_access", "openid email"])
def test_a_scope_added_on_the_consent_form_is_invalid_scope(browser, user, confidential_client, added):
    """RFC 6749 §3.3 / OIDC Core §3.1.2.4: consent is obtained for the requested scopes; a scope the
    page did not show (though the client may ask for it) is invalid_scope (§4.1.2.1), no code, and
    nothing is remembered."""
    request = _request(confidential_client, scope="openid profile")
    page = _page(browser, request.url())
    response = browser.post("/oauth/authorize", _answer(page, scope=added))
    _assert_error_redirect(response, request, "invalid_scope")
    _assert_no_code(response)
    assert not Consent.objects.filter(user=user).exists()


def test_narrowing_the_scopes_grants_and_remembers_only_those(browser, user, confidential_client):
    """OIDC Core §3.1.2.4: the user may grant less than was asked; the code and the remembered consent
    hold what was granted, so a later request for the rest asks again."""
    request = _request(confidential_client, scope="openid profile email")
    page = _page(browser, request.url())
    response = browser.post("/oauth/authorize", _answer(page, scope="openid email"))
    params = query_of(response["Location"])
    assert params["code"]
    assert AuthorizationCode.objects.get().scope == "openid email"
    assert sorted(Consent.objects.get(user=user).scopes) == ["email", "openid"]
    assert (
        browser.get(_request(confidential_client, scope="openid profile").url()).status_code == HTTPStatus.OK
    )


def test_the_remembered_consent_is_what_was_shown_not_what_was_posted(browser, user, confidential_client):
    """OIDC Core §3.1.2.4: a later request for a scope the user never saw on a page shows the page."""
    request = _request(confidential_client, scope="openid")
    page = _page(browser, request.url())
    browser.post("/oauth/authorize", _answer(page, scope="openid profile email offline_access"))
    consent = Consent.objects.filter(user=user).first()
    assert consent is None or set(consent.scopes) <= {"openid"}
    later = browser.get(_request(confidential_client, scope="openid email").url())
    assert later.status_code == HTTPStatus.OK


def test_another_clients_id_on_the_consent_form_gets_the_error_page(browser, user, client_factory):
    """RFC 6749 §4.1.2.1: the answer is for the client the page named; another client's id (even one
    with the same redirect URI) is refused without a redirect, and no consent is remembered for it."""
    shown = client_factory(name="Shown")
    other = client_factory(name="Other")
    page = _page(browser, _request(shown).url())
    response = browser.post("/oauth/authorize", _answer(page, client_id=other.client_id))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    _assert_no_code(response)
    assert not Consent.objects.filter(user=user).exists()


def test_another_code_challenge_on_the_consent_form_is_refused(browser, confidential_client):
    """RFC 7636 §4.4: the code is bound to the request's code_challenge; a well-formed other one on the
    form is invalid_request, not a code bound to it."""
    request = _request(confidential_client)
    page = _page(browser, request.url())
    _verifier, other_challenge = pkce_pair()
    response = browser.post("/oauth/authorize", _answer(page, code_challenge=other_challenge))
    _assert_error_redirect(response, request, "invalid_request")
    _assert_no_code(response)


def test_another_state_or_nonce_on_the_consent_form_is_refused(browser, confidential_client):
    """RFC 6749 §4.1.2: state is returned exactly as the client sent it; OIDC Core §3.1.2.1 nonce too."""
    request = _request(confidential_client)
    page = _page(browser, request.url())
    response = browser.post("/oauth/authorize", _answer(page, nonce="chosen-by-the-user"))
    _assert_error_redirect(response, request, "invalid_request")
    _assert_no_code(response)


def test_a_resource_dropped_or_swapped_on_the_consent_form_is_invalid_target(browser, client_factory):
    """RFC 8707 §2: the code is for the resources of the request; the form may not change them."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    request = _request(registered)
    page = _page(browser, request.url() + "&" + urlencode({"resource": API}))
    response = browser.post("/oauth/authorize", _answer(page, resource=REPORTS))
    _assert_error_redirect(response, request, "invalid_target")
    _assert_no_code(response)


def test_a_consent_form_is_answered_once(browser, confidential_client):
    """RFC 6749 §4.1.2: one request, one code. Posting the same answer twice gets no second code."""
    page = _page(browser, _request(confidential_client).url())
    data = _answer(page)
    assert query_of(browser.post("/oauth/authorize", data)["Location"])["code"]
    again = browser.post("/oauth/authorize", data)
    assert again.status_code == HTTPStatus.BAD_REQUEST
    assert AuthorizationCode.objects.count() == 1


def test_a_consent_form_shown_in_another_browser_cannot_be_answered(browser, user, confidential_client):
    """The page's request is kept in the session of the browser it was shown in."""
    page = _page(browser, _request(confidential_client).url())
    other = HttpClient()
    sign_in(other, user)
    response = other.post("/oauth/authorize", _answer(page))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    _assert_no_code(response)


def test_the_consent_form_posted_to_another_request_url_is_refused(browser, confidential_client):
    """The form posts back to the URL of the request it shows; a query naming another request (here
    without its acr_values) is not that request's answer."""
    request = _request(confidential_client)
    page = _page(browser, request.url(acr_values=MFA_ACR))
    response = browser.post(request.url(), _answer(page))
    _assert_error_redirect(response, request, "invalid_request")
    _assert_no_code(response)


def test_the_consent_form_posted_to_its_own_url_issues_a_code(browser, confidential_client):
    """A browser posts the form to the page's URL (the form has no action): that is its answer."""
    request = _request(confidential_client)
    page = _page(browser, request.url())
    assert query_of(browser.post(request.url(), _answer(page))["Location"])["code"]


# --- W4: every requirement is checked again on the answer ------------------------------------------


@pytest.fixture
def password_only(settings, db):
    """UAA_MFA_REQUIRED=false and a user without a factor, signed in with a password (acr pwd)."""
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    http = HttpClient()
    assert http.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == "/accounts/"
    return http, user


def _forged_answer(request):
    return {
        "client_id": request.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": request.scope,
        "state": request.state,
        "nonce": request.nonce,
        "code_challenge": request.challenge,
        "code_challenge_method": "S256",
        "allow": "Authorize",
    }


@pytest.mark.parametrize("posted_to", ["with_acr_values", "bare"])
def test_a_consent_post_for_acr_values_mfa_from_a_password_session_gets_no_code(
    password_only, confidential_client, posted_to
):
    """OIDC Core §3.1.2.1 acr_values: the GET steps this session up to a second factor; the consent form
    posted straight away, without that page, gets no code."""
    http, _user = password_only
    request = _request(confidential_client)
    url = request.url(acr_values=MFA_ACR)
    assert http.get(url)["Location"].startswith(STEP_UP)
    response = http.post(
        url if posted_to == "with_acr_values" else "/oauth/authorize", _forged_answer(request)
    )
    _assert_no_code(response)
    assert response.status_code in (HTTPStatus.BAD_REQUEST, HTTPStatus.FOUND)
    if response.status_code == HTTPStatus.FOUND:
        assert not response["Location"].startswith(REDIRECT_URI) or "error=" in response["Location"]


def test_a_consent_page_answered_after_the_session_lost_its_second_factor_steps_up(
    password_only, confidential_client
):
    """OIDC Core §3.1.2.1 acr_values, checked again by the same rule when the page is answered: a session
    whose acr no longer meets it is sent to the second factor, and no code is issued."""
    http, user = password_only
    TOTPDevice.objects.create(user=user, name="app", confirmed=True, tolerance=1)
    session = http.session
    session["uaa_acr"] = MFA_ACR  # as if the factor had been proven at sign-in
    session.save()
    request = _request(confidential_client)
    url = request.url(acr_values=MFA_ACR)
    page = _page(http, url)
    session = http.session
    session["uaa_acr"] = "urn:uaa:acr:pwd"  # a later password-only sign-in of the same user
    session.save()
    response = http.post(url, _answer(page))
    _assert_no_code(response)
    assert response["Location"].startswith(STEP_UP)


def test_a_consent_page_for_a_client_requiring_mfa_answered_from_a_password_session(
    password_only, client_factory
):
    """The client's "requires MFA" flag, on the answer as on the GET."""
    http, _user = password_only
    strict = client_factory(name="Payroll", requires_mfa=True)
    request = _request(strict)
    response = http.post(request.url(), _forged_answer(request))
    _assert_no_code(response)


SIGNED_IN_AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def test_a_consent_page_answered_after_max_age_ran_out_asks_to_sign_in_again(user, confidential_client):
    """OIDC Core §3.1.2.1 max_age: "the OP MUST attempt to actively re-authenticate the End-User" when
    the last authentication is older; the page was shown in time, answered too late: sign in first."""
    with freeze_time(SIGNED_IN_AT) as clock:
        http = HttpClient()
        sign_in(http, user)
        request = _request(confidential_client)
        url = request.url(max_age="60")
        page = _page(http, url)
        clock.tick(timedelta(minutes=2))
        response = http.post(url, _answer(page))
        _assert_no_code(response)
        assert urlsplit(response["Location"]).path == LOGIN


def test_a_consent_page_for_prompt_login_is_answered_after_the_sign_in(user, confidential_client):
    """OIDC Core §3.1.2.1 prompt=login then consent: the sign-in is asked for, then the page, whose answer
    issues the code (the re-authentication is still that request's)."""
    with freeze_time(SIGNED_IN_AT) as clock:
        http = HttpClient()
        sign_in(http, user)
        clock.tick(timedelta(minutes=5))
        request = _request(confidential_client)
        url = request.url(prompt="login")
        assert urlsplit(http.get(url)["Location"]).path == LOGIN
        sign_in(http, user, next=url)
        page = _page(http, url)
        response = http.post(url, _answer(page))
        params = query_of(response["Location"])
        assert params["code"]
        exchanged = exchange_code(
            HttpClient(), code=params["code"], request=request, auth=confidential_client.basic
        )
        assert exchanged.status_code == HTTPStatus.OK
