"""A real browser through the MFA sign-in: Debian's Chromium, driven by Playwright, against the live server.

Covers what only a browser shows: the pages render and their forms work with the CSP in force, the
QR code and key are on the enrollment page, the WebAuthn script talks to a (virtual) authenticator, and
the user lands on the client's redirect URI with a code (RFC 6749 §4.1.2) after password, second factor
and consent. Screenshots go to $UAA_SCREENSHOT_DIR (default var/test/screenshots); docs/screenshots/ holds
a copy made with UAA_SCREENSHOT_DIR=docs/screenshots.

Skipped only where /usr/bin/chromium is missing (`apt-get install chromium chromium-driver`);
Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django_otp.oath import TOTP

from tests.conftest import REDIRECT_URI
from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import AuthorizationRequest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("UAA_SCREENSHOT_DIR", "var/test/screenshots"))
MFA_ACR = "urn:uaa:acr:mfa"
TIMEOUT = 10

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


@pytest.fixture
def issuer(live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The live server's URL is the issuer, so iss and the WebAuthn origin/rp_id (localhost) match it."""
    url = live_server.url.rstrip("/")
    settings.UAA_ISSUER = url
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": url}
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return url


@pytest.fixture
def page(issuer: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 900, "height": 1100})
        context.set_default_timeout(TIMEOUT * 1000)
        tab = context.new_page()
        # The relying party is not running: answer its redirect URI in the browser and keep the URL.
        tab.route("https://rp.example.com/**", lambda route: route.fulfill(status=200, body="relying party"))
        yield tab
        context.close()
        browser.close()


def shot(tab: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def code_from_key(manual_key: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for the key typed in from the page (RFC 6238, 30 s, 6 digits)."""
    raw = manual_key.replace(" ", "")
    key = base64.b32decode(raw + "=" * (-len(raw) % 8))
    generator = TOTP(key, step=30, t0=0, digits=6)
    generator.time = time.time() + 30 * steps_ahead
    return f"{generator.token():06d}"


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def redeem(issuer: str, registered: Any, request: AuthorizationRequest, location: str) -> dict[str, Any]:
    params = parse_qs(urlsplit(location).query)
    assert params["state"] == [request.state]
    assert params["iss"] == [issuer]  # RFC 9207
    response = requests.post(
        f"{issuer}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": request.verifier,
        },
        auth=(registered.client_id, registered.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == HTTPStatus.OK, response.text
    return claims_of(response.json()["id_token"])


def password_step(tab: Any, email: str) -> None:
    tab.fill("#id_email", email)
    tab.fill("#id_password", PASSWORD)
    tab.click("button[type=submit].primary")


def test_new_user_enrolls_totp_saves_backup_codes_consents_and_gets_a_code_then_steps_up(
    page, issuer, confidential_client
):
    """The whole first sign-in in a browser; then acr_values with max_age=0 asks for the factor again."""
    user = UserFactory(mfa=False)
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)

    page.goto(issuer + request.url())
    assert urlsplit(page.url).path == "/accounts/login"
    page.fill("#id_email", user.email)
    page.fill("#id_password", PASSWORD)
    shot(page, "sign-in")
    page.click("button[type=submit].primary")

    assert urlsplit(page.url).path == "/accounts/mfa/enroll"
    assert page.locator("#qr svg").count() == 1  # the QR code is inline SVG rendered by the server
    manual_key = page.inner_text("#manual-key")
    shot(page, "mfa-enroll")
    page.fill("#id_code", "000000" if code_from_key(manual_key) != "000000" else "111111")
    page.click("#confirm")
    assert "That code is not valid" in page.inner_text("#error")  # a wrong code is refused, clearly
    page.fill("#id_code", code_from_key(manual_key))
    page.click("#confirm")

    page.wait_for_selector("#backup-codes")  # shown in the response to the confirming POST
    codes = page.locator("#backup-codes code").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", code) for code in codes)
    shot(page, "backup-codes")
    page.click("#continue")

    assert urlsplit(page.url).path == "/oauth/authorize"
    assert page.locator("#allow").is_visible()
    shot(page, "consent")
    page.click("#allow")
    page.wait_for_url(REDIRECT_URI + "?**")
    first = redeem(issuer, confidential_client, request, page.url)
    assert first["amr"] == ["pwd", "otp", "mfa"]
    assert first["acr"] == MFA_ACR

    # Step-up: the client wants a fresh sign-in with a second factor (OIDC Core §3.1.2.1).
    step_up = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    page.goto(issuer + step_up.url(acr_values=MFA_ACR, max_age="0"))
    assert urlsplit(page.url).path == "/accounts/login"
    password_step(page, user.email)
    assert urlsplit(page.url).path == "/accounts/mfa"
    shot(page, "mfa-challenge")
    page.fill("#id_code", code_from_key(manual_key, steps_ahead=1))  # the current code was used once
    page.click("#verify")
    page.wait_for_url(REDIRECT_URI + "?**")  # consent was remembered
    second = redeem(issuer, confidential_client, step_up, page.url)
    assert second["acr"] == MFA_ACR
    assert second["auth_time"] >= first["auth_time"]
    assert second["sid"] != first["sid"]  # a new sign-in, a new session


def test_passkey_enrollment_and_sign_in_with_chromiums_virtual_authenticator(page, issuer):
    """WebAuthn through the browser's own API, answered by a CDP virtual authenticator (ctap2, internal)."""
    user = UserFactory(mfa=False)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.goto(issuer + "/accounts/login")
    password_step(page, user.email)
    assert urlsplit(page.url).path == "/accounts/mfa/enroll"
    page.fill("#id_name", "Chromium virtual key")
    page.click("#add-webauthn")
    page.wait_for_selector("#backup-codes")
    page.click("#continue")
    assert "You are signed in" in page.inner_text("h1")

    page.goto(issuer + "/accounts/security")
    assert "Chromium virtual key" in page.inner_text("#factors")
    shot(page, "security")
    page.click("#sign-out-everywhere")
    assert urlsplit(page.url).path == "/accounts/login"

    password_step(page, user.email)
    assert urlsplit(page.url).path == "/accounts/mfa"
    page.click("#use-webauthn")
    page.wait_for_url("**/accounts/")
    assert "You are signed in" in page.inner_text("h1")
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]})[
        "credentials"
    ]
    assert credential["rpId"] == "localhost"  # the issuer's host (WebAuthn §5.1.3)
    assert credential["signCount"] >= 1
