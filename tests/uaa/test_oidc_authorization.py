"""OpenID Connect Core 1.0 §3.1.2: the authorization endpoint's prompt, max_age, sign-in and consent."""

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as HttpClient
from freezegun import freeze_time

from tests.conftest import REDIRECT_URI
from tests.conftest import sign_in as sign_in_with_mfa
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of, verify_with_jwks
from uaa.oauth.models import Consent

ISSUER = "http://testserver"
SIGNED_IN_AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def sign_in(http, user, password, next_url=None):
    data = {"password": password}
    if next_url is not None:
        data["next"] = next_url
    response = sign_in_with_mfa(http, user, **data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    return response


def next_of(response):
    """The ``next`` target of a redirect to the sign-in page."""
    location = urlsplit(response["Location"])
    assert location.path == "/accounts/login"
    return parse_qs(location.query)["next"][0]


def allow(http, response):
    """Press "Allow" on a rendered consent page."""
    form = response.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data["allow"] = "Authorize"
    return http.post("/oauth/authorize", data)


def id_token_claims(http, registered, request, params):
    response = exchange_code(
        HttpClient(),
        code=params["code"],
        request=request,
        auth=registered.basic if registered.secret else None,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    jwks = http.get("/.well-known/jwks.json").json()
    _, claims = verify_with_jwks(response.json()["id_token"], jwks)
    return claims


@pytest.fixture
def request_for(confidential_client):
    def make(registered=confidential_client, **kwargs):
        kwargs.setdefault("redirect_uri", REDIRECT_URI)
        return AuthorizationRequest(client_id=registered.client_id, **kwargs)

    return make


@pytest.fixture
def trusted_client(client_factory):
    return client_factory(name="First party", trusted=True)


@pytest.fixture
def frozen_browser(user, password):
    """A browser that signed in at SIGNED_IN_AT, with the clock still frozen there."""
    with freeze_time(SIGNED_IN_AT) as clock:
        http = HttpClient()
        sign_in(http, user, password)
        yield http, clock


# --- not signed in ------------------------------------------------------------------------------


def test_unauthenticated_user_is_sent_to_sign_in_with_next(client, request_for):
    """OIDC Core §3.1.2.3: the server authenticates the End-User, then resumes the same request."""
    request = request_for()
    response = client.get(request.url())
    assert response.status_code == HTTPStatus.FOUND
    assert next_of(response) == request.url()


def test_signing_in_resumes_the_authorization_request(client, request_for, user, password):
    """OIDC Core §3.1.2.3: after authentication the request continues to consent and a code."""
    request = request_for()
    response = sign_in(client, user, password, next_url=next_of(client.get(request.url())))
    assert response["Location"] == request.url()
    consent_page = client.get(response["Location"])
    assert consent_page.status_code == HTTPStatus.OK
    params = query_of(allow(client, consent_page)["Location"])
    assert params["state"] == request.state
    assert params["code"]


def test_prompt_none_without_a_session_redirects_login_required(client, request_for):
    """OIDC Core §3.1.2.6: prompt=none and no session → login_required at the redirect URI, with state."""
    request = request_for()
    response = client.get(request.url(prompt="none"))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params == {"error": "login_required", "state": request.state, "iss": ISSUER}


def test_prompt_none_with_an_unregistered_redirect_uri_never_redirects(client, request_for):
    """RFC 6749 §4.1.2.1: an unregistered redirect URI gets an error page, even for prompt=none."""
    request = request_for(redirect_uri="https://evil.example/steal")
    response = client.get(request.url(prompt="none"))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert b"evil.example" not in response.content


def test_prompt_none_with_an_unknown_client_never_redirects(client, request_for):
    """RFC 6749 §4.1.2.1: an unknown client_id gets an error page, never a redirect."""
    request = AuthorizationRequest(client_id="no-such-client", redirect_uri=REDIRECT_URI)
    response = client.get(request.url(prompt="none"))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert response.templates[0].name == "oauth/error.html"


def test_prompt_none_combined_with_another_value_is_invalid_request(browser, request_for):
    """OIDC Core §3.1.2.1: if prompt contains none with any other value, an error is returned."""
    request = request_for()
    response = browser.get(request.url(prompt="none login"))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == request.state
    assert "code" not in params


# --- prompt=none while signed in ----------------------------------------------------------------


def test_prompt_none_signed_in_without_consent_redirects_consent_required(browser, request_for):
    """OIDC Core §3.1.2.6: consent_required when the user has not yet granted the scopes."""
    request = request_for()
    response = browser.get(request.url(prompt="none"))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params == {"error": "consent_required", "state": request.state, "iss": ISSUER}


def test_prompt_none_signed_in_with_remembered_consent_issues_a_code(browser, request_for):
    """OIDC Core §3.1.2.1 prompt=none: no UI is shown when nothing needs the user."""
    authorize(browser, request_for())
    request = request_for()
    response = browser.get(request.url(prompt="none"))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["code"]
    assert params["state"] == request.state
    assert params["iss"] == ISSUER


def test_prompt_none_with_a_trusted_client_issues_a_code(browser, request_for, trusted_client):
    """OIDC Core §3.1.2.1 prompt=none: a first-party client needs no consent."""
    request = request_for(trusted_client)
    params = query_of(browser.get(request.url(prompt="none"))["Location"])
    assert params["code"]


def test_prompt_none_with_a_stale_session_redirects_login_required(frozen_browser, request_for):
    """OIDC Core §3.1.2.6: max_age would need a new sign-in, which prompt=none forbids."""
    http, clock = frozen_browser
    clock.tick(timedelta(minutes=10))
    request = request_for()
    response = http.get(request.url(prompt="none", max_age="60"))
    assert query_of(response["Location"])["error"] == "login_required"


# --- prompt=login and max_age -------------------------------------------------------------------


def test_prompt_login_shows_the_sign_in_page_even_when_signed_in(browser, request_for):
    """OIDC Core §3.1.2.1 prompt=login: the server SHOULD prompt the End-User for reauthentication. The way
    back is the request as it came: prompt=login is answered by the sign-in made after it, which the
    session records, not by dropping it (tests/uaa/test_oidc_reauthentication.py)."""
    request = request_for()
    response = browser.get(request.url(prompt="login"))
    assert response.status_code == HTTPStatus.FOUND
    resumed = next_of(response)
    assert resumed == request.url(prompt="login")
    assert browser.get(response["Location"]).status_code == HTTPStatus.OK


def test_signing_in_again_after_prompt_login_gives_the_new_auth_time(
    frozen_browser, request_for, user, password, confidential_client
):
    """OIDC Core §2: auth_time is the time of the End-User authentication, here the new one."""
    http, clock = frozen_browser
    clock.tick(timedelta(minutes=5))
    request = request_for()
    resumed = next_of(http.get(request.url(prompt="login")))
    response = sign_in(http, user, password, next_url=resumed)
    assert response["Location"] == request.url(prompt="login")
    params = authorize(http, request, prompt="login")
    claims = id_token_claims(http, confidential_client, request, params)
    assert claims["auth_time"] == int((SIGNED_IN_AT + timedelta(minutes=5)).timestamp())


def test_fresh_session_within_max_age_is_not_asked_to_sign_in(frozen_browser, request_for):
    """OIDC Core §3.1.2.1 max_age: an authentication younger than max_age is reused."""
    http, clock = frozen_browser
    clock.tick(timedelta(seconds=59))
    response = http.get(request_for().url(max_age="60"))
    assert response.status_code == HTTPStatus.OK  # the consent page


def test_exceeded_max_age_forces_sign_in(frozen_browser, request_for, user, password, confidential_client):
    """OIDC Core §3.1.2.1: if the elapsed time is greater than max_age, the OP MUST re-authenticate."""
    http, clock = frozen_browser
    clock.tick(timedelta(seconds=61))
    request = request_for()
    response = http.get(request.url(max_age="60"))
    assert response.status_code == HTTPStatus.FOUND
    response = sign_in(http, user, password, next_url=next_of(response))
    consent_page = http.get(response["Location"])
    assert consent_page.status_code == HTTPStatus.OK
    params = query_of(allow(http, consent_page)["Location"])
    claims = id_token_claims(http, confidential_client, request, params)
    assert claims["auth_time"] == int((SIGNED_IN_AT + timedelta(seconds=61)).timestamp())


def test_max_age_zero_forces_sign_in_and_then_completes(browser, request_for, user, password):
    """OIDC Core §3.1.2.1: max_age=0 is equivalent to prompt=login; one sign-in satisfies it (no loop)."""
    request = request_for()
    response = browser.get(request.url(max_age="0"))
    assert response.status_code == HTTPStatus.FOUND
    response = sign_in(browser, user, password, next_url=next_of(response))
    consent_page = browser.get(response["Location"])
    assert consent_page.status_code == HTTPStatus.OK, consent_page.get("Location")
    assert query_of(allow(browser, consent_page)["Location"])["code"]


def test_max_age_zero_without_a_session_needs_only_one_sign_in(client, request_for, user, password):
    """OIDC Core §3.1.2.1: max_age=0 is equivalent to prompt=login, for a new visitor too."""
    request = request_for()
    response = sign_in(client, user, password, next_url=next_of(client.get(request.url(max_age="0"))))
    assert client.get(response["Location"]).status_code == HTTPStatus.OK


@pytest.mark.parametrize("max_age", ["abc", "-1", "1.5", "", "1e3"])
def test_invalid_max_age_is_invalid_request(browser, request_for, max_age):
    """OIDC Core §3.1.2.1: max_age is a non-negative number of seconds; anything else is invalid_request."""
    request = request_for()
    response = browser.get(request.url(max_age=max_age))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER


# --- consent ------------------------------------------------------------------------------------


def test_consent_page_lists_every_requested_scope(browser, request_for, settings):
    """OIDC Core §3.1.2.4: the server obtains consent for the requested scopes, and says what they are."""
    response = browser.get(request_for(scope="openid profile email").url())
    assert response.status_code == HTTPStatus.OK
    assert response.templates[0].name == "oauth/consent.html"
    page = response.content.decode()
    for scope in ("openid", "profile", "email"):
        assert settings.UAA_SCOPES[scope] in page
    assert settings.UAA_SCOPES["offline_access"] not in page
    assert "Relying Party" in page


def test_cancel_on_the_consent_page_redirects_access_denied_with_state(browser, request_for, user):
    """RFC 6749 §4.1.2.1: the resource owner denied the request → access_denied, with state and iss."""
    request = request_for()
    consent_page = browser.get(request.url())
    form = consent_page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}  # "Cancel" sends no allow
    response = browser.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == "access_denied"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params
    assert not Consent.objects.filter(user=user).exists()


def test_consent_is_remembered_for_the_same_scopes(browser, request_for):
    """OIDC Core §3.1.2.4: consent may be established by prior interaction; it is not asked twice."""
    authorize(browser, request_for(scope="openid profile"))
    request = request_for(scope="openid profile")
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["code"]


def test_consent_is_remembered_for_fewer_scopes(browser, request_for):
    """OIDC Core §3.1.2.4: a request for a subset of granted scopes needs no new consent."""
    authorize(browser, request_for(scope="openid profile email"))
    response = browser.get(request_for(scope="openid email").url())
    assert response.status_code == HTTPStatus.FOUND


def test_consent_is_asked_again_for_new_scopes(browser, request_for, settings):
    """OIDC Core §3.1.2.4: scopes the user has not granted need consent."""
    authorize(browser, request_for(scope="openid"))
    response = browser.get(request_for(scope="openid email").url())
    assert response.status_code == HTTPStatus.OK
    assert settings.UAA_SCOPES["email"] in response.content.decode()


def test_consent_is_per_client(browser, request_for, client_factory):
    """OIDC Core §3.1.2.4: consent given to one client is not consent given to another."""
    authorize(browser, request_for())
    other = client_factory(name="Other RP")
    assert browser.get(request_for(other).url()).status_code == HTTPStatus.OK


def test_prompt_consent_asks_again_despite_remembered_consent(browser, request_for):
    """OIDC Core §3.1.2.1 prompt=consent: the server SHOULD prompt the End-User for consent."""
    authorize(browser, request_for())
    response = browser.get(request_for().url(prompt="consent"))
    assert response.status_code == HTTPStatus.OK
    assert "form" in response.context


# Attacker: a client's user is fooled, or a client needs fresh consent (new terms, a sensitive scope),
# and sends prompt=consent. Whether the browser was signed in or not, the user must see the consent page:
# a remembered consent or a trusted client must not skip it because sign-in came first.


@pytest.fixture
def remembered_consent(request_for, user, password):
    """The user granted the client its scopes earlier, in another browser."""
    other = HttpClient()
    sign_in(other, user, password)
    authorize(other, request_for())
    assert Consent.objects.filter(user=user).exists()


def _signed_out_through_sign_in(http, url, user, password):
    """Open ``url`` signed out, sign in (password, then TOTP) and follow the way back; the final page."""
    response = http.get(url)
    assert response.status_code == HTTPStatus.FOUND
    response = sign_in(http, user, password, next_url=next_of(response))
    return http.get(response["Location"])


def test_prompt_consent_survives_sign_in_despite_remembered_consent(
    client, request_for, user, password, remembered_consent
):
    """OIDC Core §3.1.2.1 prompt=consent: the Authorization Server SHOULD prompt the End-User for consent
    before returning information to the Client; signing in first does not answer that prompt."""
    request = request_for()
    page = _signed_out_through_sign_in(client, request.url(prompt="consent"), user, password)
    assert page.status_code == HTTPStatus.OK
    assert page.templates[0].name == "oauth/consent.html"
    params = query_of(allow(client, page)["Location"])
    assert params["code"]
    assert params["state"] == request.state


def test_prompt_consent_survives_sign_in_for_a_trusted_client(
    client, request_for, trusted_client, user, password
):
    """OIDC Core §3.1.2.1 prompt=consent overrides the trusted-client shortcut, for a signed-out user too."""
    page = _signed_out_through_sign_in(
        client, request_for(trusted_client).url(prompt="consent"), user, password
    )
    assert page.status_code == HTTPStatus.OK
    assert page.templates[0].name == "oauth/consent.html"


def test_prompt_consent_is_kept_in_the_way_back_from_sign_in(client, request_for):
    """OIDC Core §3.1.2.1: only the login value is answered by the sign-in; consent is still to be asked."""
    resumed = next_of(client.get(request_for().url(prompt="consent")))
    assert query_of(resumed)["prompt"] == "consent"


@pytest.mark.parametrize("signed_in", [True, False])
def test_prompt_login_consent_asks_for_both(request_for, user, password, remembered_consent, signed_in):
    """OIDC Core §3.1.2.1: prompt is a space-delimited list; "login consent" asks to re-authenticate and then
    for consent. The sign-in answers login (no loop back to it), consent is still asked. The way back keeps
    both values."""
    http = HttpClient()
    if signed_in:
        sign_in(http, user, password)
    response = http.get(request_for().url(prompt="login consent"))
    resumed = next_of(response)
    assert query_of(resumed)["prompt"] == "login consent"
    response = sign_in(http, user, password, next_url=resumed)
    page = http.get(response["Location"])
    assert page.status_code == HTTPStatus.OK
    assert page.templates[0].name == "oauth/consent.html"


def test_without_prompt_consent_remembered_consent_still_skips_the_page_after_sign_in(
    client, request_for, user, password, remembered_consent
):
    """OIDC Core §3.1.2.4: consent established by prior interaction is reused when nobody asks again."""
    response = _signed_out_through_sign_in(client, request_for().url(), user, password)
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["code"]


def test_trusted_client_skips_consent(browser, request_for, trusted_client, user):
    """DESIGN: consent is skipped for first-party clients marked trusted."""
    request = request_for(trusted_client)
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["code"]
    assert params["state"] == request.state
    assert params["iss"] == ISSUER


def test_trusted_client_still_asks_with_prompt_consent(browser, request_for, trusted_client):
    """OIDC Core §3.1.2.1 prompt=consent overrides the trusted-client shortcut."""
    response = browser.get(request_for(trusted_client).url(prompt="consent"))
    assert response.status_code == HTTPStatus.OK


def test_consent_for_another_user_does_not_count(request_for, user, password):
    """OIDC Core §3.1.2.4: consent belongs to the End-User who gave it."""
    first = HttpClient()
    sign_in(first, user, password)
    authorize(first, request_for())
    second = HttpClient()
    sign_in(second, UserFactory(), password)
    assert second.get(request_for().url()).status_code == HTTPStatus.OK


def test_consent_form_is_protected_against_cross_site_submission(request_for, user, password):
    """RFC 6749 §10.12 / RFC 9700 §4.7: a third-party site cannot submit "Allow" for the user (CSRF)."""
    http = HttpClient(enforce_csrf_checks=True)
    page = http.get("/accounts/login")
    response = sign_in_with_mfa(http, user, password, csrfmiddlewaretoken=page.context["csrf_token"])
    assert response.status_code == HTTPStatus.FOUND
    consent_page = http.get(request_for().url())
    form = consent_page.context["form"]
    forged = {name: form.initial.get(name) or "" for name in form.fields}
    forged["allow"] = "Authorize"
    response = http.post("/oauth/authorize", forged)  # no CSRF token, as a cross-site form would send
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "Location" not in response


def test_consent_post_with_a_tampered_redirect_uri_never_redirects_there(browser, request_for):
    """RFC 6749 §4.1.2.1 / §10.15: the redirect URI is checked again when the user answers."""
    consent_page = browser.get(request_for().url())
    form = consent_page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(allow="Authorize", redirect_uri="https://evil.example/steal")
    response = browser.post("/oauth/authorize", data)
    assert "evil.example" not in response.get("Location", "")
    assert response.status_code == HTTPStatus.BAD_REQUEST


@pytest.mark.parametrize("parameter", ["request", "request_uri"])
def test_request_objects_are_refused_as_not_supported(browser, request_for, parameter):
    """OIDC Core §6: should an OP not support this parameter and an RP uses it, the OP MUST return
    request_not_supported (request_uri_not_supported); discovery says both are unsupported."""
    request = request_for()
    value = "eyJhbGciOiJub25lIn0.e30." if parameter == "request" else "https://rp.example.com/request.jwt"
    response = browser.get(request.url(**{parameter: value}))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["error"] == f"{parameter}_not_supported"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params


def test_request_object_with_prompt_none_is_refused_before_sign_in(client, request_for):
    """OIDC Core §6 / §3.1.2.6: the error reaches the RP even when nobody is signed in."""
    response = client.get(request_for().url(prompt="none", request="eyJhbGciOiJub25lIn0.e30."))
    assert query_of(response["Location"])["error"] == "request_not_supported"


# --- response_mode ------------------------------------------------------------------------------
#
# Attacker: a client-side script or a party that reads URL fragments (a page on the redirect URI's origin
# that does not expect a code there, or a browser extension). Discovery offers response_mode=query and
# form_post (tests/uaa/test_oidc_form_post.py), so a request for another mode must not have its code
# delivered some other way.


@pytest.mark.parametrize("response_mode", ["fragment", "query.jwt", "web_message"])
def test_unsupported_response_mode_gets_no_code_even_with_remembered_consent(
    browser, request_for, response_mode
):
    """OAuth 2.0 Multiple Response Type Encoding Practices §2.1 / OIDC Core §3.1.2.1 response_mode: UAA
    lists "query" and "form_post" (response_modes_supported); another mode is invalid_request (§4.1.2.1),
    returned in the query, not a code placed in the fragment when no page is shown."""
    authorize(browser, request_for())
    request = request_for()
    response = browser.get(request.url(response_mode=response_mode))
    assert response.status_code == HTTPStatus.FOUND
    assert "#" not in response["Location"]
    params = query_of(response["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params


def test_unsupported_response_mode_is_refused_before_sign_in(client, request_for):
    """OIDC Core §3.1.2.6: the request error reaches the client without asking anyone to sign in."""
    request = request_for()
    response = client.get(request.url(response_mode="fragment"))
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert query_of(response["Location"])["error"] == "invalid_request"


@pytest.mark.parametrize("response_mode", ["query", ""])
def test_query_response_mode_or_none_is_accepted(browser, request_for, response_mode):
    """Multiple Response Type Encoding Practices §2.1: query is the code flow's default; RFC 6749 §3.1: a
    parameter sent without a value is treated as omitted."""
    params = authorize(browser, request_for(), response_mode=response_mode)
    assert params["code"]


def test_consent_form_posted_with_a_fragment_response_mode_gets_no_code_in_a_fragment(browser, request_for):
    """Multiple Response Type Encoding Practices §2.1: the approved request is checked again; a consent
    form posted to a URL naming another response mode gets invalid_request, not a code in a fragment."""
    page = browser.get(request_for().url())
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data["allow"] = "Authorize"
    response = browser.post("/oauth/authorize?response_mode=fragment", data)
    assert response.status_code == HTTPStatus.FOUND
    assert "#" not in response["Location"]
    assert query_of(response["Location"])["error"] == "invalid_request"
