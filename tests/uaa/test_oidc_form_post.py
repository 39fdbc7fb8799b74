"""OAuth 2.0 Form Post Response Mode (uaa/oauth/form_post.py): ``response_mode=form_post`` answers with an
HTML form the browser posts to the redirect URI, carrying ``code`` (or the error), ``state`` and ``iss``
(RFC 9207); ``query`` stays the default and ``fragment`` is still refused.

Attackers:

- whoever writes the authorization request (a link on any site): a ``state`` or other value made to break
  out of the form's HTML (``"><script>``), or a redirect URI the client never registered, to have the
  browser post a code somewhere else;
- a page that frames UAA's form page, or reads where the browser came from (the Referer);
- anyone reading the browser's cache, or the client's own page, looking for UAA's CSRF token.
"""

from __future__ import annotations

from html.parser import HTMLParser
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from uaa.oauth import form_post
from uaa.oauth.models import AuthorizationCode

ISSUER = "http://testserver"
SCRIPT = '"><script>alert(1)</script>'
FORM_POST_JS = Path(django_settings.BASE_DIR) / "static" / "uaa" / "form_post.js"


class _Page(HTMLParser):
    """The forms (action, method, fields), the scripts (src, inline text) and the buttons of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.scripts: list[dict[str, str]] = []
        self.buttons: list[dict[str, str]] = []
        self.attributes: set[str] = set()
        self.noscript = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.attributes |= set(attributes)
        if tag == "form":
            self.forms.append({**attributes, "fields": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["fields"].append((attributes.get("name", ""), attributes.get("value", "")))
        elif tag == "script":
            self.scripts.append({"src": attributes.get("src", ""), "text": ""})
            self._in_script = True
        elif tag == "noscript":
            self.noscript = True
        elif tag == "button":
            self.buttons.append({**attributes, "in_noscript": str(self.noscript)})

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        elif tag == "noscript":
            self.noscript = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1]["text"] += data


def parsed(response: Any) -> _Page:
    page = _Page()
    page.feed(response.content.decode())
    return page


def posted_form(response: Any) -> tuple[str, dict[str, str]]:
    """The Form Post page's one form: its action and its fields (names never repeated)."""
    assert response.status_code == HTTPStatus.OK, (response.status_code, response.get("Location"))
    assert response.templates[0].name == "oauth/form_post.html"
    (form,) = parsed(response).forms
    assert form["method"] == "post"
    names = [name for name, _ in form["fields"]]
    assert len(names) == len(set(names))
    return form["action"], dict(form["fields"])


@pytest.fixture
def request_for(confidential_client):
    def make(registered=confidential_client, **kwargs):
        kwargs.setdefault("redirect_uri", REDIRECT_URI)
        return AuthorizationRequest(client_id=registered.client_id, **kwargs)

    return make


@pytest.fixture
def consented(browser, request_for):
    """A browser whose user has already allowed the client: the code comes without a page."""
    authorize(browser, request_for())
    return browser


# --- the code and the errors, posted ----------------------------------------------------------------
def test_code_state_and_iss_are_posted_to_the_redirect_uri_and_the_code_redeems(
    consented, request_for, confidential_client
):
    """Form Post Response Mode §2: the response parameters as form fields, the redirect URI the action."""
    request = request_for()
    action, fields = posted_form(consented.get(request.url(response_mode="form_post")))
    assert action == REDIRECT_URI
    assert set(fields) == {"code", "state", "iss"}
    assert fields["state"] == request.state
    assert fields["iss"] == ISSUER  # RFC 9207 §2
    response = exchange_code(
        HttpClient(), code=fields["code"], request=request, auth=confidential_client.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content


def test_the_consent_pages_answer_is_posted_too(browser, request_for):
    """The mode is the request's: kept with the consent page, it shapes the answer's response."""
    request = request_for()
    page = browser.get(request.url(response_mode="form_post"))
    assert page.templates[0].name == "oauth/consent.html"
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    allowed = browser.post(request.url(response_mode="form_post"), {**data, "allow": "Authorize"})
    _action, fields = posted_form(allowed)
    assert fields["code"] and fields["state"] == request.state


def test_cancel_on_the_consent_page_posts_access_denied(browser, request_for):
    """RFC 6749 §4.1.2.1 access_denied, in the mode the request asked for."""
    request = request_for()
    page = browser.get(request.url(response_mode="form_post"))
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    action, fields = posted_form(browser.post("/oauth/authorize", data))
    assert action == REDIRECT_URI
    assert fields["error"] == "access_denied"
    assert fields["state"] == request.state and fields["iss"] == ISSUER
    assert "code" not in fields


def test_prompt_none_without_a_session_posts_login_required(client, request_for):
    """OIDC Core §3.1.2.6 errors reach the client the way it asked, before anyone signs in."""
    request = request_for()
    action, fields = posted_form(client.get(request.url(response_mode="form_post", prompt="none")))
    assert action == REDIRECT_URI
    assert fields == {"error": "login_required", "state": request.state, "iss": ISSUER}


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"prompt": "select_account"}, "invalid_request"),  # UAA's own refusal (interaction.check_request)
        ({"code_challenge_method": "plain"}, "invalid_request"),  # RFC 7636: S256 only
        ({"response_type": "token"}, "unsupported_response_type"),  # UAA offers code only (server.py)
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),  # OIDC Core §6
    ],
)
def test_request_errors_on_a_valid_redirect_uri_are_posted(consented, request_for, override, error):
    """Form Post Response Mode §2 covers error responses: every refusal sent to the client is a form."""
    request = request_for()
    action, fields = posted_form(consented.get(request.url(response_mode="form_post", **override)))
    assert action == REDIRECT_URI
    assert fields["error"] == error
    assert fields["state"] == request.state and fields["iss"] == ISSUER
    assert "code" not in fields


def test_a_registered_redirect_uri_with_a_query_keeps_it_in_the_action(client_factory, browser):
    """RFC 6749 §3.1.2: the redirect URI's own query is kept; the response parameters are the form's."""
    uri = "https://rp.example.com/callback?tenant=blue"
    registered = client_factory(redirect_uris=[uri], trusted=True)
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=uri)
    action, fields = posted_form(browser.get(request.url(response_mode="form_post")))
    assert action == uri
    assert set(fields) == {"code", "state", "iss"}


def test_query_stays_the_default(consented, request_for):
    """Multiple Response Type Encoding Practices §2.1: without response_mode, a redirect with the query."""
    response = consented.get(request_for().url())
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["code"]


def test_fragment_is_still_refused_for_the_code_flow(consented, request_for):
    """§2.1: the code flow's parameters never go in a fragment; the refusal is in the query."""
    response = consented.get(request_for().url(response_mode="fragment"))
    assert response.status_code == HTTPStatus.FOUND
    assert "#" not in response["Location"]
    assert query_of(response["Location"])["error"] == "invalid_request"


def test_discovery_lists_query_and_form_post(client, db):
    """RFC 8414 §2 / OIDC Discovery §3 response_modes_supported: what the endpoint does, no more."""
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        assert client.get(path).json()["response_modes_supported"] == ["query", "form_post"]


# --- attacks ----------------------------------------------------------------------------------------------
def test_a_script_in_state_is_escaped_and_comes_back_unchanged(consented, request_for):
    """RFC 6749 §10.14: the state is data in an attribute, HTML-escaped, never markup."""
    request = request_for(state=SCRIPT)
    response = consented.get(request.url(response_mode="form_post"))
    _action, fields = posted_form(response)
    assert fields["state"] == SCRIPT  # what the client sent, unchanged once the browser parses it
    assert SCRIPT.encode() not in response.content
    assert b"<script>alert" not in response.content
    assert [script["src"] for script in parsed(response).scripts] == ["/static/uaa/form_post.js"]


def test_an_error_description_is_escaped(consented, request_for):
    """Whatever an error's text holds, it is an attribute value too."""
    response = consented.get(request_for(state=SCRIPT).url(response_mode="form_post", prompt="bogus"))
    _action, fields = posted_form(response)
    assert fields["error"] == "invalid_request" and fields["state"] == SCRIPT
    assert SCRIPT.encode() not in response.content


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/callback", "https://rp.example.com/callback/../steal", "javascript:alert(1)"],
)
def test_an_unregistered_redirect_uri_gets_the_error_page_and_no_form(consented, request_for, redirect_uri):
    """RFC 6749 §4.1.2.1 / §10.15: no form posts anything to a redirect URI the client did not register."""
    response = consented.get(request_for(redirect_uri=redirect_uri).url(response_mode="form_post"))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.templates[0].name == "oauth/error.html"
    assert parsed(response).forms == []
    assert b"evil.example" not in response.content
    assert not AuthorizationCode.objects.filter(redirect_uri=redirect_uri).exists()


def test_the_page_has_no_inline_script_and_the_csp_allows_its_own(consented, request_for):
    """CSP (uaa/middleware.py): script-src 'self' and no 'unsafe-inline'; the one script is a static file
    of UAA's, and no element carries an event handler."""
    response = consented.get(request_for().url(response_mode="form_post"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "nonce-" not in csp and "sha256-" not in csp
    page = parsed(response)
    assert page.scripts and all(script["src"] and not script["text"].strip() for script in page.scripts)
    assert not [name for name in page.attributes if name.startswith("on")]  # no onload=, onclick=, ...
    assert b"javascript:" not in response.content
    assert "form.submit()" in FORM_POST_JS.read_text()
    assert HttpClient().get("/static/uaa/form_post.js").status_code == HTTPStatus.OK


def test_without_javascript_a_submit_button_posts_the_form(consented, request_for):
    """A browser without JavaScript gets the same form and a button inside <noscript>."""
    page = parsed(consented.get(request_for().url(response_mode="form_post")))
    (button,) = page.buttons
    assert button["type"] == "submit" and button["in_noscript"] == "True"


def test_the_page_cannot_be_framed_cached_or_read_through_the_referer(consented, request_for):
    """Clickjacking and leaks: no framing (X-Frame-Options, frame-ancestors), no-store (the code must not
    be cached), and no Referer to the client (it would carry the authorization request's URL)."""
    response = consented.get(request_for().url(response_mode="form_post"))
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_uaas_csrf_token_is_not_posted_to_the_client(consented, request_for):
    """The form goes to another site: it carries the response and nothing of UAA's."""
    response = consented.get(request_for().url(response_mode="form_post"))
    _action, fields = posted_form(response)
    assert "csrfmiddlewaretoken" not in fields
    assert b"csrfmiddlewaretoken" not in response.content


# --- the split, as a pure function -------------------------------------------------------------------------
def test_split_response_keeps_the_redirect_uris_own_query_and_takes_the_response():
    uri = "https://rp.example.com/cb?tenant=blue&code=abc&state=s%22&iss=https%3A%2F%2Fuaa"
    action, fields = form_post.split_response(uri)
    assert action == "https://rp.example.com/cb?tenant=blue"
    assert fields == [("code", "abc"), ("state", 's"'), ("iss", "https://uaa")]
    assert form_post.split_response("https://rp.example.com/cb?error=access_denied") == (
        "https://rp.example.com/cb",
        [("error", "access_denied")],
    )
