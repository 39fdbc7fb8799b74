"""A real browser through both halves of the Form Post flow: a relying party's page on another site POSTs the
authorization request to UAA (OIDC Core §3.1.2.1), and UAA's answer is a form the browser posts back to the
redirect URI (OAuth 2.0 Form Post Response Mode §2), all with UAA's CSP in force.

What only a browser shows: the cross-site POST is not refused for CSRF, the SameSite=Lax session cookie
comes back on the 303's GET (so a signed-in user is not asked to sign in again), the static script submits
the form under ``script-src 'self'`` with no CSP violation, the <noscript> button works with JavaScript
off, and the client's callback receives a form-encoded POST with code, state and iss and no Referer.

Skipped only where /usr/bin/chromium is missing, as tests/e2e/test_browser_mfa.py is.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import REDIRECT_URI
from tests.e2e.test_browser_mfa import CHROMIUM, CHROMIUM_ARGS, TIMEOUT, claims_of
from tests.factories import PASSWORD, UserFactory, totp_code
from tests.oauth_client import AuthorizationRequest

RP_START = "https://rp.example.com/start"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


@pytest.fixture
def issuer(live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    url = live_server.url.rstrip("/")
    settings.UAA_ISSUER = url
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": url}
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return url


class RelyingParty:
    """The client's two pages, answered inside the browser: a start page whose form POSTs the
    authorization request to UAA, and the callback, which records what the browser posted to it."""

    def __init__(self, issuer: str, request: AuthorizationRequest, *, auto_submit: bool) -> None:
        self.issuer, self.request, self.auto_submit = issuer, request, auto_submit
        self.callbacks: list[dict[str, Any]] = []

    def start_page(self) -> str:
        fields = parse_qs(urlsplit(self.request.url(response_mode="form_post")).query)
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(values[0])}">'
            for name, values in fields.items()
        )
        script = "<script>document.forms[0].submit()</script>" if self.auto_submit else ""
        return (
            f'<!doctype html><form method="post" action="{self.issuer}/oauth/authorize">{inputs}'
            f'<button id="sign-in-with-uaa">Sign in with UAA</button></form>{script}'
        )

    def route(self, route: Any) -> None:
        request = route.request
        if request.url == RP_START:
            route.fulfill(status=200, content_type="text/html", body=self.start_page())
            return
        self.callbacks.append(
            {
                "url": request.url,
                "method": request.method,
                "content_type": request.headers.get("content-type", ""),
                "referer": request.headers.get("referer"),
                "form": {name: values[0] for name, values in parse_qs(request.post_data or "").items()},
            }
        )
        route.fulfill(status=200, content_type="text/plain", body="relying party")


@pytest.fixture
def browser_context(issuer: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

        def new(*, javascript: bool = True) -> Any:
            context = browser.new_context(java_script_enabled=javascript)
            context.set_default_timeout(TIMEOUT * 1000)
            return context

        yield new
        browser.close()


def open_tab(context: Any, rp: RelyingParty) -> tuple[Any, list[str]]:
    tab = context.new_page()
    violations: list[str] = []
    tab.on("console", lambda message: violations.append(message.text) if message.type == "error" else None)
    tab.route("https://rp.example.com/**", rp.route)
    return tab, violations


def sign_in(tab: Any, user: Any) -> None:
    tab.fill("#id_email", user.email)
    tab.fill("#id_password", PASSWORD)
    tab.click("button[type=submit].primary")
    tab.fill("#id_code", totp_code(user))
    tab.click("#verify")


def redeem(issuer: str, registered: Any, request: AuthorizationRequest, code: str) -> dict[str, Any]:
    response = requests.post(
        f"{issuer}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": request.verifier,
        },
        auth=(registered.client_id, registered.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == HTTPStatus.OK, response.text
    return claims_of(response.json()["id_token"])


def assert_posted_back(rp: RelyingParty, issuer: str) -> dict[str, str]:
    (callback,) = rp.callbacks
    assert callback["url"] == REDIRECT_URI
    assert callback["method"] == "POST"
    assert callback["content_type"].startswith("application/x-www-form-urlencoded")
    assert callback["referer"] is None  # Referrer-Policy: same-origin; the request's URL stays at UAA
    form = callback["form"]
    assert set(form) == {"code", "state", "iss"}
    assert form["state"] == rp.request.state
    assert form["iss"] == issuer
    return form


def test_a_cross_site_posted_request_signs_in_consents_and_is_answered_by_form_post(
    browser_context, issuer, confidential_client
):
    """Signed-in first at UAA; the RP's page then POSTs the request from another site: no CSRF 403, no
    second sign-in (the Lax cookie comes with the 303's GET), the consent page, and the code posted back."""
    user = UserFactory()
    context = browser_context()
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    rp = RelyingParty(issuer, request, auto_submit=True)
    tab, violations = open_tab(context, rp)

    tab.goto(issuer + "/accounts/login")
    sign_in(tab, user)
    tab.wait_for_url("**/accounts/")

    tab.goto(RP_START)
    tab.wait_for_url(f"{issuer}/oauth/authorize?**")  # the 303 to the same request by GET
    assert tab.locator("#allow").is_visible()  # consent, not the sign-in page
    tab.click("#allow")
    tab.wait_for_url(REDIRECT_URI)
    form = assert_posted_back(rp, issuer)
    assert redeem(issuer, confidential_client, request, form["code"])["nonce"] == request.nonce
    assert not [text for text in violations if "Content Security Policy" in text], violations
    context.close()


def test_without_javascript_both_forms_are_submitted_by_their_buttons(
    browser_context, issuer, confidential_client
):
    """Form Post §2 for a browser without JavaScript: the <noscript> Continue button posts the response."""
    user = UserFactory()
    context = browser_context(javascript=False)
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    rp = RelyingParty(issuer, request, auto_submit=False)
    tab, _violations = open_tab(context, rp)

    tab.goto(RP_START)
    tab.click("#sign-in-with-uaa")
    assert urlsplit(tab.url).path == "/accounts/login"  # signed out: the sign-in page keeps the request
    sign_in(tab, user)
    tab.wait_for_selector("#allow")
    tab.click("#allow")
    tab.wait_for_selector("#continue")
    assert rp.callbacks == []  # nothing was posted until the button is pressed
    tab.click("#continue")
    tab.wait_for_url(REDIRECT_URI)
    form = assert_posted_back(rp, issuer)
    assert redeem(issuer, confidential_client, request, form["code"])["nonce"] == request.nonce
    context.close()
