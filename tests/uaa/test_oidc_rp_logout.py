"""OpenID Connect RP-Initiated Logout 1.0 at /oauth/logout."""

from http import HTTPStatus
from urllib.parse import urlencode

import pytest
from django.test import Client as HttpClient

from tests.conftest import sign_in
from tests.oauth_client import form_post, query_of

POST_LOGOUT = "https://rp.example.com/bye"


@pytest.fixture
def signed_in(code_flow, confidential_client, browser):
    """A browser with an SSO session, and the tokens the RP got in it."""
    return browser, code_flow(confidential_client)["tokens"]


def logout_url(**params):
    return "/oauth/logout?" + urlencode(params)


def is_signed_in(http):
    return http.get("/accounts/").status_code == HTTPStatus.OK


def test_logout_with_id_token_hint_ends_the_session_and_redirects_with_state(signed_in):
    """RP-Initiated Logout §2/§3: with a valid id_token_hint and a registered URI, log out and redirect."""
    http, tokens = signed_in
    response = http.get(
        logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="s-123")
    )
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(POST_LOGOUT + "?")
    assert query_of(response["Location"])["state"] == "s-123"
    assert not is_signed_in(http)


def test_logout_without_state_redirects_without_one(signed_in):
    """RP-Initiated Logout §3: state is only passed back when the RP sent one."""
    http, tokens = signed_in
    response = http.get(logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT))
    assert response["Location"] == POST_LOGOUT


def test_logout_revokes_the_tokens_of_the_session(signed_in, confidential_client):
    """RP-Initiated Logout §2: logging out of the OP ends what the session granted (DOT deletes tokens)."""
    http, tokens = signed_in
    http.get(logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT))
    response = form_post(
        HttpClient(), "/oauth/introspect", {"token": tokens["access_token"]}, auth=confidential_client.basic
    )
    assert response.json() == {"active": False}


def test_logout_with_client_id_and_hint_of_the_same_client_redirects(signed_in, confidential_client):
    """RP-Initiated Logout §2: client_id, when sent with id_token_hint, must name the token's audience."""
    http, tokens = signed_in
    response = http.get(
        logout_url(
            id_token_hint=tokens["id_token"],
            client_id=confidential_client.client_id,
            post_logout_redirect_uri=POST_LOGOUT,
        )
    )
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == POST_LOGOUT


def test_unregistered_post_logout_redirect_uri_gets_an_error_page(signed_in):
    """RP-Initiated Logout §3: the URI MUST have been previously registered; otherwise never redirect."""
    http, tokens = signed_in
    response = http.get(
        logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri="https://evil.example/bye")
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert response.templates[0].name == "oauth/error.html"
    assert b"evil.example" not in response.content
    assert is_signed_in(http)


def test_redirect_uri_of_the_authorization_flow_is_not_a_post_logout_uri(signed_in):
    """RP-Initiated Logout §3: only post_logout_redirect_uris count, not the client's redirect_uris."""
    http, tokens = signed_in
    response = http.get(
        logout_url(
            id_token_hint=tokens["id_token"], post_logout_redirect_uri="https://rp.example.com/callback"
        )
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response


def test_post_logout_redirect_uri_without_hint_or_client_id_gets_an_error_page(browser):
    """RP-Initiated Logout §3: without a client the URI cannot be checked, so it is refused."""
    response = browser.get(logout_url(post_logout_redirect_uri=POST_LOGOUT))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert is_signed_in(browser)


@pytest.mark.parametrize(
    "hint",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        "<script>alert(1)</script>",
    ],
)
def test_malformed_id_token_hint_gets_an_error_page(browser, hint):
    """RP-Initiated Logout §2: the OP validates id_token_hint; a bad one is refused without a redirect."""
    response = browser.get(logout_url(id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert response.templates[0].name == "oauth/error.html"
    assert b"<script>alert" not in response.content
    assert is_signed_in(browser)


def test_tampered_id_token_hint_gets_an_error_page(signed_in):
    """RP-Initiated Logout §2: an id_token_hint whose signature does not verify is refused."""
    http, tokens = signed_in
    header, payload, signature = tokens["id_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    response = http.get(logout_url(id_token_hint=forged, post_logout_redirect_uri=POST_LOGOUT))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert is_signed_in(http)


def test_id_token_hint_of_another_client_with_client_id_is_refused(signed_in, client_factory):
    """RP-Initiated Logout §2: when client_id and id_token_hint disagree, the request is refused."""
    http, tokens = signed_in
    other = client_factory(name="Other RP")
    response = http.get(
        logout_url(
            id_token_hint=tokens["id_token"], client_id=other.client_id, post_logout_redirect_uri=POST_LOGOUT
        )
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert is_signed_in(http)


def test_unknown_client_id_gets_an_error_page(browser):
    """RP-Initiated Logout §2: an unknown client_id is an error, not a server error."""
    response = browser.get(logout_url(client_id="no-such-client", post_logout_redirect_uri=POST_LOGOUT))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert is_signed_in(browser)


def test_logout_without_hint_asks_the_user_first(browser):
    """RP-Initiated Logout §2: the OP MUST ask the End-User if no id_token_hint was provided."""
    response = browser.get(logout_url())
    assert response.status_code == HTTPStatus.OK
    assert response.templates[0].name == "oauth/logout.html"
    assert is_signed_in(browser)


def test_confirming_the_logout_question_ends_the_session(browser, confidential_client):
    """RP-Initiated Logout §2: once the End-User confirms, the OP logs out and may redirect."""
    url = logout_url(client_id=confidential_client.client_id, post_logout_redirect_uri=POST_LOGOUT)
    page = browser.get(url)
    assert page.status_code == HTTPStatus.OK
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data["allow"] = "Logout"
    response = browser.post("/oauth/logout", data)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == POST_LOGOUT
    assert not is_signed_in(browser)


def test_logout_question_is_protected_against_cross_site_submission(user, password, confidential_client):
    """RP-Initiated Logout §2 / RFC 9700 §4.7: a third-party page cannot confirm logout (CSRF)."""
    http = HttpClient(enforce_csrf_checks=True)
    token = http.get("/accounts/login").context["csrf_token"]
    sign_in(http, user, password, csrfmiddlewaretoken=token)
    response = http.post("/oauth/logout", {"allow": "Logout"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert is_signed_in(http)


def test_logout_of_an_anonymous_visitor_with_a_valid_hint_still_redirects(signed_in):
    """RP-Initiated Logout §2: a session that already ended is not an error; the RP gets its redirect."""
    _, tokens = signed_in
    stranger = HttpClient()
    response = stranger.get(
        logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="x")
    )
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["state"] == "x"


def test_an_id_token_of_an_earlier_session_does_not_end_the_current_one_silently(
    code_flow, confidential_client, browser, user
):
    """RP-Initiated Logout §2: the OP MUST ask if the ID token does not belong to the current OP session;
    the token's sid (OIDC Front-Channel Logout §3) names the session it was issued in."""
    old = code_flow(confidential_client)["tokens"]["id_token"]
    browser.post("/accounts/logout")
    sign_in(browser, user)
    response = browser.get(logout_url(id_token_hint=old, post_logout_redirect_uri=POST_LOGOUT))
    assert response.status_code == HTTPStatus.OK  # the question, not a redirect
    assert is_signed_in(browser)
    current = code_flow(confidential_client)["tokens"]["id_token"]
    response = browser.get(logout_url(id_token_hint=current, post_logout_redirect_uri=POST_LOGOUT))
    assert response["Location"] == POST_LOGOUT
    assert not is_signed_in(browser)
