"""Security headers on every page and token response; no third-party resources in any page."""

import re
from http import HTTPStatus
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client as HttpClient
from django.urls import path

import uaa.urls
from tests.conftest import REDIRECT_URI
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post, query_of


def boom(request):
    raise RuntimeError("secret internals: postgres://user:pw@db/uaa")


# This module doubles as a URLconf (see test_server_error_page_...): the real one plus a view that fails.
urlpatterns = [*uaa.urls.urlpatterns, path("boom", boom)]
handler404 = uaa.urls.handler404
handler500 = uaa.urls.handler500

URL = re.compile(r"""https?://[^\s"'<>)]+""")
RESOURCE = re.compile(
    r"""(?:src|href|action|formaction|poster|srcset)\s*=\s*["']?([^"'\s>]+)|url\(\s*["']?([^"')]+)"""
)


def assert_page_headers(response):
    """The headers every HTML page carries (uaa/middleware.py and Django's SecurityMiddleware)."""
    assert response["Content-Type"].startswith("text/html")
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert response["X-Frame-Options"] == "DENY"
    # No Referer to other origins; same-origin form POSTs keep their Origin (CSRF check, Fetch §3.2.5).
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-store"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def assert_no_third_party_content(response, *, shown=()):
    """No CDN: nothing is loaded from elsewhere; the only foreign URLs are data shown to the user."""
    html = response.content.decode()
    for match in RESOURCE.finditer(html):
        target = match.group(1) or match.group(2)
        assert not target.startswith(("http:", "https:", "//")) or target.startswith(
            django_settings.UAA_ISSUER
        ), target
    for url in URL.findall(html):
        assert url.startswith(django_settings.UAA_ISSUER) or url in shown, url
    assert "<style" not in html  # CSP style-src 'self' would block inline styles
    assert " style=" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None  # and inline scripts
    assert re.search(r"\son[a-z]+\s*=", html) is None  # and inline event handlers


@pytest.fixture
def authorization(confidential_client):
    return AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)


def test_sign_in_page(client, db):
    """OWASP ASVS V14.4: the sign-in page cannot be framed, cached or sniffed."""
    response = client.get("/accounts/login")
    assert response.status_code == HTTPStatus.OK
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_failed_sign_in_page(client, user):
    """A page that answers a POST (with an error message) carries the same headers."""
    response = client.post("/accounts/login", {"email": user.email, "password": "wrong password 123"})
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_account_page(browser):
    """The signed-in landing page carries the headers."""
    response = browser.get("/accounts/")
    assert response.status_code == HTTPStatus.OK
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_consent_page(browser, authorization):
    """RFC 6749 §10.13: the consent page MUST NOT be framable (clickjacking), and is never cached."""
    response = browser.get(authorization.url())
    assert response.status_code == HTTPStatus.OK
    assert response.templates[0].name == "oauth/consent.html"
    assert_page_headers(response)
    assert_no_third_party_content(response, shown=[REDIRECT_URI])


@pytest.mark.parametrize("url", ["/oauth/authorize", "/oauth/authorize?client_id=nope&response_type=code"])
def test_authorization_error_page(browser, url):
    """RFC 6749 §4.1.2.1: the error page shown instead of a redirect carries the headers."""
    response = browser.get(url)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.templates[0].name == "oauth/error.html"
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_not_found_page(client, db):
    """RFC 9110 §15.5.5: the 404 page is ours and carries the headers."""
    response = client.get("/no/such/page")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert_page_headers(response)
    assert_no_third_party_content(response)


@pytest.mark.urls(__name__)
def test_server_error_page_has_the_headers_a_request_id_and_no_internals(db):
    """A 500 page carries the headers and a request id, and nothing of the exception."""
    http = HttpClient(raise_request_exception=False)
    response = http.get("/boom")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert_page_headers(response)
    assert_no_third_party_content(response)
    assert response["X-Request-ID"].encode() in response.content
    assert b"postgres://" not in response.content
    assert b"RuntimeError" not in response.content
    assert b"Traceback" not in response.content


def test_csrf_failure_page(user, password):
    """The CSRF failure page is ours and carries the headers."""
    http = HttpClient(enforce_csrf_checks=True)
    response = http.post("/accounts/login", {"email": user.email, "password": password})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_sign_out_page(browser):
    """The sign-out confirmation page carries the headers."""
    response = browser.get("/accounts/logout")
    assert response.status_code == HTTPStatus.OK
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_rp_logout_page(browser, confidential_client):
    """RP-Initiated Logout §2: the logout question cannot be framed (a framed click would sign out)."""
    response = browser.get(f"/oauth/logout?client_id={confidential_client.client_id}")
    assert response.status_code == HTTPStatus.OK
    assert response.templates[0].name == "oauth/logout.html"
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_rp_logout_error_page(browser):
    """RP-Initiated Logout §3: the refusal page carries the headers."""
    response = browser.get("/oauth/logout?id_token_hint=bad&post_logout_redirect_uri=https://evil.example/")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert_page_headers(response)
    assert_no_third_party_content(response)


def test_authorization_redirect_with_a_code_is_not_cached(browser, authorization):
    """RFC 6749 §10.5: authorization codes are short-lived secrets; the redirect carrying one is no-store."""
    form = browser.get(authorization.url()).context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data["allow"] = "Authorize"
    response = browser.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["code"]
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "url", ["/admin/", "/admin/oauth/client/", "/admin/oauth/client/add/", "/admin/accounts/user/"]
)
def test_admin_pages_carry_the_headers_and_need_no_inline_code(client, db, url):
    """The admin is HTML too: same headers, no CDN, and nothing the CSP would block."""
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.get(url)
    assert response.status_code == HTTPStatus.OK
    assert_page_headers(response)
    assert_no_third_party_content(
        response, shown=["http://www.w3.org/2000/svg"]
    )  # a namespace, never fetched


# --- token responses ----------------------------------------------------------------------------


def test_successful_token_response_is_not_cached(browser, authorization, confidential_client):
    """RFC 6749 §5.1: Cache-Control: no-store and Pragma: no-cache on any response with tokens."""
    params = authorize(browser, authorization)
    response = exchange_code(
        HttpClient(), code=params["code"], request=authorization, auth=confidential_client.basic
    )
    assert response.status_code == HTTPStatus.OK
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_client_credentials_token_response_is_not_cached(client, service_client):
    """RFC 6749 §5.1: the same for the client credentials grant."""
    response = form_post(
        client, "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == HTTPStatus.OK
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"


@pytest.mark.parametrize("url", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_error_responses_of_the_json_endpoints_are_not_cached(client, db, url):
    """RFC 6749 §5.2 responses use the §5.1 headers too."""
    response = form_post(client, url, {"grant_type": "nope", "token": "x"})
    assert response.status_code >= HTTPStatus.BAD_REQUEST
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"


def test_introspection_response_is_not_cached(client, service_client):
    """RFC 7662 §2.2 / RFC 6749 §5.1: introspection answers describe live tokens; never cached."""
    response = form_post(client, "/oauth/introspect", {"token": "unknown"}, auth=service_client.basic)
    assert response.status_code == HTTPStatus.OK
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"


def test_userinfo_response_is_not_cached(code_flow, confidential_client):
    """OIDC Core §5.3.2: userinfo is personal data; it is never cached."""
    tokens = code_flow(confidential_client)["tokens"]
    response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == HTTPStatus.OK
    assert response["Cache-Control"] == "no-store"


def test_stylesheet_loads_nothing_from_elsewhere():
    """No CDN: the stylesheet imports no fonts or images from another origin."""
    css = (Path(django_settings.BASE_DIR) / "static" / "uaa" / "uaa.css").read_text()
    assert "@import" not in css
    assert URL.search(css) is None


def _production_settings(**extra):
    """Settings as a production process computes them from its environment (a fresh interpreter)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("UAA_", "SECURE_", "DEBUG"))}
    env.update(
        SECRET_KEY="x" * 50,
        UAA_KEK="4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE",
        UAA_ISSUER="https://id.example.com",
        UAA_VAR_DIR=os.environ.get("UAA_VAR_DIR", "var/test"),
        DJANGO_SETTINGS_MODULE="uaa.settings",
        **extra,
    )
    code = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, "
        "s.SILENCED_SYSTEM_CHECKS]))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_hsts_preload_is_off_by_default_for_an_https_issuer():
    """RFC 6797 §6.1 and hstspreload.org: ``preload`` asks browsers to hard-code HTTPS for the whole domain
    and its subdomains, and is slow to undo; only the domain's owner can promise that, so it is opt-in."""
    seconds, subdomains, preload, silenced = _production_settings()
    assert seconds == 31536000 and subdomains is True
    assert preload is False
    assert "security.W021" in silenced  # "not preloaded" is a decision here, not a deploy-check finding


def test_hsts_preload_is_opt_in_with_uaa_hsts_preload():
    """RFC 6797 §6.1: with UAA_HSTS_PRELOAD=true the header carries ``preload``; the deploy check is live."""
    _, _, preload, silenced = _production_settings(UAA_HSTS_PRELOAD="true")
    assert preload is True
    assert "security.W021" not in silenced


@pytest.mark.parametrize("preload", [False, True])
def test_the_hsts_header_carries_preload_only_when_asked(client, db, settings, preload):
    """RFC 6797 §6.1: Strict-Transport-Security: max-age; includeSubDomains; and preload only on request."""
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = preload
    settings.SECURE_SSL_REDIRECT = False
    response = client.get("/healthz", secure=True)
    header = response["Strict-Transport-Security"]
    assert header.startswith("max-age=31536000; includeSubDomains")
    assert ("preload" in header) is preload
