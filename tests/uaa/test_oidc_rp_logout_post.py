"""OpenID Connect RP-Initiated Logout 1.0 §2: "The OP MUST support the use of the HTTP GET and POST methods".

An RP's POST (form-encoded, from the RP's own site: cross-site, without UAA's CSRF token) is the same
request as the GET; it was Django's CSRF 403. The attacker is a third-party page in the user's browser: it
must not confirm the logout question (that answer stays CSRF-checked), and gets by POST no more than a
link to the GET gives it.
"""

from http import HTTPStatus
from urllib.parse import urlencode

import pytest

from tests.oauth_client import query_of

POST_LOGOUT = "https://rp.example.com/bye"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def signed_in(code_flow, confidential_client, browser):
    """A browser with an SSO session that checks CSRF as a real one does, and the RP's tokens."""
    tokens = code_flow(confidential_client)["tokens"]
    browser.handler.enforce_csrf_checks = True
    return browser, tokens


def is_signed_in(http):
    return http.get("/accounts/").status_code == HTTPStatus.OK


def post(http, data, path="/oauth/logout"):
    return http.post(path, urlencode(data, doseq=True), content_type=FORM)


def test_the_rps_posted_logout_request_is_answered_as_the_get_and_ends_the_session(signed_in):
    http, tokens = signed_in
    data = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": POST_LOGOUT, "state": "s-1"}
    response = post(http, data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert response["Location"].startswith(POST_LOGOUT + "?")
    assert query_of(response["Location"])["state"] == "s-1"
    assert not is_signed_in(http)


def test_a_long_id_token_hint_is_posted_without_becoming_a_url(
    signed_in, user, code_flow, confidential_client
):
    """Red team, issue 11 round 2: the POST was a 303 to the GET, and an ID token with a full profile
    (5,884 characters there) made that URL longer than gunicorn's request line (4,094): 414, the user
    still signed in, the token in the access log. The RP's POST is now answered where it arrives."""
    http, _ = signed_in
    long_url = "https://example.com/" + "p" * 470
    for field in ("profile", "picture", "website"):
        setattr(user, field, long_url)
    user.nickname = user.middle_name = user.preferred_username = "n" * 150
    user.street_address = "s" * 250
    user.save()
    http.handler.enforce_csrf_checks = False  # the code flow's consent form, as a browser posts it
    hint = code_flow(confidential_client, scope="openid profile address")["tokens"]["id_token"]
    http.handler.enforce_csrf_checks = True
    assert len(hint) > 4094
    response = post(http, {"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT})
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert response["Location"] == POST_LOGOUT
    assert not is_signed_in(http)


def test_a_posted_logout_request_without_a_hint_asks_the_user(signed_in):
    http, _ = signed_in
    unknown = post(http, {"client_id": "x" * 10, "state": "s"})
    assert unknown.status_code == HTTPStatus.BAD_REQUEST  # the error page: an unknown client
    page = post(http, {"state": "s"})
    assert page.status_code == HTTPStatus.OK
    assert b"Sign out" in page.content
    assert is_signed_in(http)


@pytest.mark.parametrize(
    "extra",
    [
        {"allow": "Logout"},
        {"allow": "Logout", "csrfmiddlewaretoken": "forged" * 8},
        {"csrfmiddlewaretoken": "x"},
    ],
)
def test_a_cross_site_answer_to_the_logout_question_is_still_refused(signed_in, extra):
    """The question's answer carries the user's decision: without the page's CSRF token it is 403."""
    http, _ = signed_in
    response = post(http, {"post_logout_redirect_uri": POST_LOGOUT, **extra})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert is_signed_in(http)


def test_a_post_under_a_query_is_the_question_page_answer_and_csrf_checked(signed_in):
    """The question page posts back to its own URL, query and all: such a POST is an answer."""
    http, tokens = signed_in
    path = "/oauth/logout?" + urlencode({"post_logout_redirect_uri": POST_LOGOUT})
    response = post(http, {"id_token_hint": tokens["id_token"]}, path=path)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert is_signed_in(http)


def test_a_multipart_logout_post_is_csrf_checked(signed_in):
    http, tokens = signed_in
    response = http.post("/oauth/logout", {"id_token_hint": tokens["id_token"]})  # multipart/form-data
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert is_signed_in(http)


def test_the_question_answered_on_the_page_still_signs_out(signed_in):
    """The question the RP's POST is answered with posts back, with the page's CSRF token, and signs out."""
    http, _ = signed_in
    page = post(http, {"state": "q"})
    assert page.status_code == HTTPStatus.OK
    form = page.context["form"]
    answer = {name: form.initial.get(name) or "" for name in form.fields}
    answer |= {"allow": "Logout", "csrfmiddlewaretoken": page.context["csrf_token"]}
    response = http.post("/oauth/logout", answer)
    assert response.status_code in (HTTPStatus.FOUND, HTTPStatus.OK)
    assert not is_signed_in(http)


@pytest.mark.parametrize(
    "data",
    [
        {"id_token_hint": ["a", "b"]},  # a repeated parameter (OIDC Core §3.1.2.1 / RFC 6749 §3.1)
        {"state": "s" * 20_000},  # beyond the length limit
        {"state": "a\x00b"},
    ],
)
def test_a_malformed_posted_logout_request_is_a_400_page(signed_in, data):
    http, _ = signed_in
    response = post(http, data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert is_signed_in(http)
