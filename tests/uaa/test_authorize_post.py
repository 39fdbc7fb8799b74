"""OIDC Core §3.1.2.1: the authorization endpoint "MUST support the use of the HTTP GET and POST methods";
a POSTed request is form-encoded in the body. UAA answers it with a 303 to the same request by GET, so it
is validated, decided and sent to sign in exactly as the GET is (uaa/oauth/views.py AuthorizeView.dispatch).

Attacker: a cross-site page POSTing to /oauth/authorize in the user's browser (signed in at UAA). An
authorization request carries no decision of the user's, so it needs no CSRF token and gets no CSRF 403;
the consent page's answer is the user's decision and stays CSRF-protected, however the attacker dresses
it up: with the authorization request's parameters, with a consent page id, under a query, as multipart,
or as PUT. A POSTed request grants nothing a link to the GET would not.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI, sign_in
from tests.factories import PASSWORD
from tests.oauth_client import FORM, AuthorizationRequest, authorize, exchange_code, query_of
from uaa.oauth.models import AuthorizationCode, Consent

AUTHORIZE = "/oauth/authorize"


def params_of(request: AuthorizationRequest, **overrides: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(request.url(**overrides)).query).items()}


def post_request(http: HttpClient, data: dict[str, str] | list[tuple[str, str]]):
    """What an RP's auto-submitting form sends: the request form-encoded, to the bare endpoint URL."""
    return http.post(AUTHORIZE, urlencode(data), content_type=FORM)


def assert_same_request_by_get(response, params):
    assert response.status_code == HTTPStatus.SEE_OTHER  # RFC 9110 §15.4.4: the browser GETs it
    location = urlsplit(response["Location"])
    assert location.scheme == "" and location.netloc == "" and location.path == AUTHORIZE
    assert {name: values[0] for name, values in parse_qs(location.query).items()} == params
    return response["Location"]


@pytest.fixture
def request_for(confidential_client):
    def make(**kwargs):
        return AuthorizationRequest(
            client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, **kwargs
        )

    return make


@pytest.fixture
def guarded(user):
    """A signed-in browser that enforces CSRF checks, as a real one does."""
    http = HttpClient(enforce_csrf_checks=True)
    token = http.get("/accounts/login").context["csrf_token"]
    response = sign_in(http, user, PASSWORD, csrfmiddlewaretoken=token)
    assert response.status_code == HTTPStatus.FOUND
    return http


# --- the RP's POST is the GET ----------------------------------------------------------------------------
def test_a_posted_request_without_a_session_gets_no_csrf_403(db, request_for):
    """A cross-site form POST carries no cookies (SameSite=Lax): before this, Django's CSRF 403."""
    http = HttpClient(enforce_csrf_checks=True)
    params = params_of(request_for())
    assert_same_request_by_get(post_request(http, params), params)


def test_a_posted_request_is_signed_in_and_consented_like_the_get(
    client, request_for, user, confidential_client
):
    """The way back from the sign-in page is the GET form of the request, and the code redeems."""
    request = request_for()
    location = assert_same_request_by_get(post_request(client, params_of(request)), params_of(request))
    to_sign_in = client.get(location)
    assert to_sign_in.status_code == HTTPStatus.FOUND
    assert urlsplit(to_sign_in["Location"]).path == "/accounts/login"
    back = sign_in(client, user, PASSWORD, next=location)
    assert back["Location"] == location
    page = client.get(location)
    assert page.templates[0].name == "oauth/consent.html"
    form = page.context["form"]
    answer = {name: form.initial.get(name) or "" for name in form.fields}
    params = query_of(client.post(location, {**answer, "allow": "Authorize"})["Location"])
    assert params["state"] == request.state
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=confidential_client.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content


def test_a_posted_request_with_consent_on_record_gets_its_code_like_the_get(browser, request_for):
    authorize(browser, request_for())
    request = request_for()
    location = assert_same_request_by_get(post_request(browser, params_of(request)), params_of(request))
    assert query_of(browser.get(location)["Location"])["state"] == request.state


def test_a_posted_request_keeps_repeated_resources(browser, request_for):
    """RFC 8707 §2: several resource parameters survive the way to the GET."""
    pairs = [
        *params_of(request_for()).items(),
        ("resource", "https://a.example"),
        ("resource", "https://b.example"),
    ]
    response = post_request(browser, pairs)
    assert response.status_code == HTTPStatus.SEE_OTHER
    assert parse_qs(urlsplit(response["Location"]).query)["resource"] == [
        "https://a.example",
        "https://b.example",
    ]


def test_a_posted_request_with_a_repeated_parameter_gets_the_error_page(db, request_for):
    """RFC 6749 §3.1, as on the GET: a request that repeats a parameter cannot name its redirect URI."""
    pairs = [*params_of(request_for()).items(), ("redirect_uri", "https://evil.example/cb")]
    response = post_request(HttpClient(), pairs)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response


def test_a_posted_request_for_an_unknown_client_ends_on_the_error_page(client, db, request_for):
    params = params_of(request_for(), client_id="nobody")
    location = assert_same_request_by_get(post_request(client, params), params)
    assert client.get(location).status_code == HTTPStatus.BAD_REQUEST


def test_a_posted_request_for_form_post_gets_the_form(browser, request_for):
    """Both halves of the Form Post flow: the request POSTed, the response posted back."""
    authorize(browser, request_for())
    params = params_of(request_for(), response_mode="form_post")
    page = browser.get(assert_same_request_by_get(post_request(browser, params), params))
    assert page.templates[0].name == "oauth/form_post.html"


# --- attacks: the consent answer stays CSRF-protected ------------------------------------------------------
def _consent_page(http, request):
    page = http.get(request.url())
    assert page.templates[0].name == "oauth/consent.html"
    form = page.context["form"]
    return {name: form.initial.get(name) or "" for name in form.fields}


def assert_nothing_granted(response):
    assert response.status_code == HTTPStatus.FORBIDDEN, response.status_code
    assert "Location" not in response
    assert not AuthorizationCode.objects.exists()
    assert not Consent.objects.exists()


def test_a_cross_site_post_of_a_request_with_allow_is_a_consent_answer_and_refused(guarded, request_for):
    """An attacker's form names a request and presses "Allow" for the user: without the user's CSRF token,
    403 — it is never taken for a request (which could then be answered) nor for a valid answer."""
    assert_nothing_granted(post_request(guarded, {**params_of(request_for()), "allow": "Authorize"}))


def test_a_forged_answer_to_a_consent_page_the_user_has_open_is_refused(guarded, request_for):
    """The attacker even knows the page id (the user has the page open): still the CSRF 403."""
    answer = _consent_page(guarded, request_for())
    assert_nothing_granted(post_request(guarded, {**answer, "allow": "Authorize"}))


def test_a_forged_answer_posted_to_the_pages_own_url_is_refused(guarded, request_for):
    request = request_for()
    answer = _consent_page(guarded, request)
    assert_nothing_granted(
        guarded.post(request.url(), urlencode({**answer, "allow": "Authorize"}), content_type=FORM)
    )


def test_a_request_posted_under_a_query_is_not_taken_for_an_rps_post(guarded, request_for):
    """A POST with a query is what the consent form sends: CSRF-checked, whatever its body."""
    response = guarded.post(f"{AUTHORIZE}?x=1", urlencode(params_of(request_for())), content_type=FORM)
    assert_nothing_granted(response)


def test_a_multipart_post_is_not_taken_for_an_rps_post(guarded, request_for):
    """OIDC Core §3.1.2.1 says form serialization; anything else is CSRF-checked."""
    answer = _consent_page(guarded, request_for())
    assert_nothing_granted(guarded.post(AUTHORIZE, {**answer, "allow": "Authorize"}))  # multipart/form-data


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_csrf_checked(guarded, request_for, method):
    """Django's FormView answers PUT as POST: the view's CSRF exemption must not reach it."""
    answer = _consent_page(guarded, request_for())
    response = getattr(guarded, method)(
        AUTHORIZE, urlencode({**answer, "allow": "Authorize"}), content_type=FORM
    )
    assert_nothing_granted(response)


def test_the_users_own_answer_with_its_token_still_works(guarded, request_for):
    """The CSRF check is Django's, on the same token as before."""
    request = request_for()
    answer = _consent_page(guarded, request)
    token = guarded.cookies["uaa_csrf"].value
    response = guarded.post(request.url(), {**answer, "allow": "Authorize", "csrfmiddlewaretoken": token})
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["code"]


def test_a_cross_site_posted_request_grants_no_more_than_a_link(guarded, request_for):
    """Without consent on record, the POSTed request ends on the consent page, not with a code."""
    params = params_of(request_for())
    page = guarded.get(assert_same_request_by_get(post_request(guarded, params), params))
    assert page.status_code == HTTPStatus.OK
    assert page.templates[0].name == "oauth/consent.html"
    assert not AuthorizationCode.objects.exists()
