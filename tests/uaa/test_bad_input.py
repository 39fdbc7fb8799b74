"""Hostile and malformed input: clean RFC 6749 errors on the JSON endpoints, safe pages in the browser.

RFC 6749 §3.1/§3.2: parameters sent without a value are treated as omitted, parameters MUST NOT
be included more than once; the token endpoint takes application/x-www-form-urlencoded in UTF-8
(Appendix B). §5.2: errors are JSON with ``error`` and an optional ``error_description`` for
developers. None of it may become a 500, echo the input, or show a traceback.
"""

import base64
import json
import logging
from http import HTTPStatus
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import REDIRECT_URI
from tests.oauth_client import FORM, AuthorizationRequest, form_post
from tests.uaa import fuzz

JSON_ENDPOINTS = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"]
SCRIPT = "<script>alert(1)</script>"
INTERNALS = (
    "Traceback",
    'File "',
    "Exception",
    "Error:",
    "django",
    "oauthlib",
    "psycopg",
    "sqlite",
    "SELECT",
)

# Values an attacker or a broken client sends. Each is distinctive enough that finding it in a
# response means it was echoed.
HOSTILE = [
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(document.cookie)",
    "' OR '1'='1' --",
    "{{7*7}}{% debug %}",
    "../../../../etc/passwd",
    "\r\nSet-Cookie: pwned=1",
    "ünïcødé-ß-東京-\u202e-🙂",
    "\ufeff\u200b\u2028zero-width",
    "%00%ff%c0%af",
    "A" * 5000,
]


def assert_clean_error(response, *, status=None, error=None, sent=()):
    """RFC 6749 §5.2: a JSON error object, no-store, nothing from the request or the server's insides."""
    assert HTTPStatus.BAD_REQUEST <= response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, response.content
    if status is not None:
        assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    body = response.json()
    assert isinstance(body["error"], str)
    if error is not None:
        assert body["error"] == error
    text = response.content.decode()
    for marker in INTERNALS:
        assert marker not in text
    for value in sent:
        assert value not in text
        assert json.dumps(value)[1:-1] not in text


def post_raw(http, url, body, content_type=FORM, **headers):
    return http.post(url, body, content_type=content_type, **headers)


@pytest.fixture
def auth(service_client):
    """Valid client authentication, so that the input (not the credentials) is what fails."""
    return service_client.basic


# --- the JSON endpoints: token, revocation, introspection ---------------------------------------


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
def test_repeated_body_parameters_are_invalid_request(client, auth, url):
    """RFC 6749 §3.1: request and response parameters MUST NOT be included more than once."""
    body = "grant_type=client_credentials&token=a&token=a&grant_type=client_credentials"
    response = post_raw(client, url, body, HTTP_AUTHORIZATION=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
def test_parameter_repeated_in_query_and_body_is_invalid_request(client, auth, url):
    """RFC 6749 §3.1: a parameter in the query string and again in the body is still repeated."""
    response = post_raw(
        client,
        url + "?scope=openid",
        "grant_type=client_credentials&token=t&scope=openid",
        HTTP_AUTHORIZATION=auth,
    )
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
def test_oversized_body_is_refused(client, auth, settings, url):
    """RFC 9110 §15.5.14: a body above DATA_UPLOAD_MAX_MEMORY_SIZE is refused as 413, in the §5.2 shape."""
    body = "grant_type=client_credentials&token=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = post_raw(client, url, body, HTTP_AUTHORIZATION=auth)
    assert_clean_error(response, status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
def test_body_just_under_the_limit_is_read(client, auth, settings, url):
    """The size limit refuses only what is above it: a large but allowed body gets a protocol answer."""
    body = "grant_type=client_credentials&token=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2)
    response = post_raw(client, url, body, HTTP_AUTHORIZATION=auth)
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.BAD_REQUEST)
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize("where", ["body", "query"])
def test_too_many_parameters_are_invalid_request(client, auth, settings, url, where):
    """RFC 6749 §5.2 invalid_request: more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS is refused, not a 500."""
    fields = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    body = "grant_type=client_credentials&token=t" + ("&" + fields if where == "body" else "")
    target = url + ("?" + fields if where == "query" else "")
    response = post_raw(client, target, body, HTTP_AUTHORIZATION=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body", [b"grant_type=%FF%FE", b"token=%C0%AF", b"grant_type=\xff\xfe", b"to\xc3ken=a"]
)
def test_invalid_utf8_is_invalid_request(client, auth, url, body):
    """RFC 6749 Appendix B: names and values are UTF-8 before percent-encoding; anything else is refused."""
    response = post_raw(client, url, body, HTTP_AUTHORIZATION=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", json.dumps({"grant_type": "client_credentials", "token": "t"})),
        (
            "multipart/form-data; boundary=XYZ",
            '--XYZ\r\nContent-Disposition: form-data; name="token"\r\n\r\nt\r\n--XYZ--',
        ),
        ("text/plain", "grant_type=client_credentials&token=t"),
        ("application/xml", "<grant_type>client_credentials</grant_type>"),
    ],
)
def test_a_body_that_is_not_form_encoded_is_invalid_request(client, auth, url, content_type, body):
    """RFC 6749 §4.1.3 / RFC 7009 §2.1 / RFC 7662 §2.1: the body is application/x-www-form-urlencoded."""
    response = post_raw(client, url, body, content_type=content_type, HTTP_AUTHORIZATION=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        "grant_type=client%00credentials&token=t",
        "token=a%00b",
        "to%00ken=a",
        "grant_type=client_credentials\x00",
    ],
)
def test_nul_bytes_are_invalid_request(client, auth, url, body):
    """RFC 6749 Appendix A: no parameter syntax admits NUL; it never reaches the database."""
    response = post_raw(client, url, body, HTTP_AUTHORIZATION=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_methods_other_than_post_are_refused_with_allow(client, url, method):
    """RFC 6749 §3.2: the client MUST use POST; RFC 9110 §15.5.6: a 405 names the allowed methods."""
    response = getattr(client, method)(url + "?grant_type=client_credentials&token=t")
    assert_clean_error(response, status=HTTPStatus.METHOD_NOT_ALLOWED)
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        "Basic %%%not-base64",
        "Basic " + base64.b64encode(b"\xff\xfe:secret").decode(),
        "Basic " + base64.b64encode(b"client\x00id:secret").decode(),
        "Basic " + base64.b64encode(b"client%00id:secret").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(SCRIPT.encode() + b":x").decode(),
        "Bearer " + SCRIPT,
        "Basic",
        # the scheme is case-insensitive (RFC 9110 §11.1): malformed in lower case is just as malformed
        "basic %%%not-base64",
        "BASIC " + base64.b64encode(b"client\x00id:secret").decode(),
        "basic " + base64.b64encode(b"no-colon").decode(),
        "basic",
    ],
)
def test_malformed_client_authentication_is_invalid_client(client, db, url, authorization):
    """RFC 6749 §5.2 invalid_client: failed client authentication is 401 with WWW-Authenticate."""
    response = post_raw(
        client, url, "grant_type=client_credentials&token=t", HTTP_AUTHORIZATION=authorization
    )
    assert_clean_error(response, status=HTTPStatus.UNAUTHORIZED, error="invalid_client", sent=[SCRIPT])
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("url", [*JSON_ENDPOINTS, "/oauth/userinfo"])
@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "iso-8859-1", "us-ascii", ""])
def test_a_form_in_another_charset_than_utf8_is_invalid_request(client, auth, caplog, url, charset):
    """RFC 6749 Appendix B: the form body is UTF-8. ``charset=latin-1`` or ``utf-16`` is the client's error:
    400 invalid_request, not a server_error with a traceback (Django refuses to parse such a form)."""
    response = post_raw(
        client,
        url,
        "grant_type=client_credentials&token=t",
        content_type=f"{FORM}; charset={charset}",
        HTTP_AUTHORIZATION=auth,
    )
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
@pytest.mark.parametrize("credentials", ["é", "Ã©", "☃" + base64.b64encode(b"a:b").decode(), "abc\x00"])
def test_basic_credentials_that_are_not_ascii_are_invalid_client(client, db, caplog, url, credentials):
    """RFC 7617 §2 / RFC 6749 §2.3.1: Basic credentials are base64 (ASCII). Anything else authenticates no
    client: 401 invalid_client with WWW-Authenticate, never a 500."""
    response = post_raw(
        client, url, "grant_type=client_credentials&token=t", HTTP_AUTHORIZATION=f"Basic {credentials}"
    )
    assert_clean_error(response, status=HTTPStatus.UNAUTHORIZED, error="invalid_client")
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_bearer_token_that_is_not_ascii_is_invalid_token(client, db):
    """RFC 6750 §2.1: b64token is ASCII; anything else is invalid_token with a Bearer challenge."""
    for scheme in ("Bearer", "bearer"):
        response = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"{scheme} é")
        assert response.status_code == HTTPStatus.UNAUTHORIZED
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("url", ["/oauth/token", "/accounts/login", "/oauth/authorize", "/oauth/logout"])
@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "٣"])
def test_a_malformed_content_length_is_a_400(client, db, caplog, url, length):
    """RFC 9110 §8.6: Content-Length = 1*DIGIT. Anything else is a 400, in the endpoint's own error form."""
    client.raise_request_exception = False
    response = post_raw(client, url, "a=b", CONTENT_LENGTH=length)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    if url == "/oauth/token":
        assert_clean_error(response, error="invalid_request")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("problem", ["oversized", "too many fields", "foreign host"])
def test_django_refusals_of_malformed_requests_are_logged_as_warnings(client, db, caplog, settings, problem):
    """Django logs SuspiciousOperation refusals at ERROR with a traceback; they are the client's fault, so
    they are warnings (STYLE.md: only surprises are errors) and a flood of them cannot fill the ERROR log."""
    client.raise_request_exception = False
    headers = {"HTTP_HOST": "evil.example"} if problem == "foreign host" else {}
    if problem == "oversized":
        body = "state=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    else:
        body = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = post_raw(client, "/accounts/login", body, **headers)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    security = [record for record in caplog.records if record.name.startswith("django.security.")]
    assert security and all(record.levelno == logging.WARNING and not record.exc_info for record in security)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        SCRIPT,
    ],
)
def test_unsupported_grant_type_is_refused(client, auth, grant_type):
    """RFC 6749 §5.2 unsupported_grant_type: the grant type is not supported by the server."""
    response = form_post(client, "/oauth/token", {"grant_type": grant_type}, auth=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="unsupported_grant_type", sent=[SCRIPT])


@pytest.mark.parametrize("data", [{}, {"grant_type": ""}, {"scope": "openid"}])
def test_missing_grant_type_is_invalid_request(client, auth, data):
    """RFC 6749 §5.2 invalid_request: the request is missing a required parameter (grant_type)."""
    response = form_post(client, "/oauth/token", data, auth=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("scope", ["admin", "openid admin", SCRIPT, "a\tb"])
def test_unknown_scope_is_invalid_scope(client, auth, scope):
    """RFC 6749 §5.2 invalid_scope: the requested scope is invalid, unknown, or malformed."""
    response = form_post(
        client, "/oauth/token", {"grant_type": "client_credentials", "scope": scope}, auth=auth
    )
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_scope", sent=[SCRIPT])


def test_revocation_without_a_token_is_invalid_request(client, auth):
    """RFC 7009 §2.1: token is REQUIRED."""
    response = form_post(client, "/oauth/revoke", {"token_type_hint": "access_token"}, auth=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


def test_introspection_without_a_token_is_invalid_request(client, auth):
    """RFC 7662 §2.1: token is REQUIRED."""
    response = form_post(client, "/oauth/introspect", {"token_type_hint": "access_token"}, auth=auth)
    assert_clean_error(response, status=HTTPStatus.BAD_REQUEST, error="invalid_request")


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
def test_hostile_values_never_cause_a_server_error_or_an_echo(client, auth, url):
    """RFC 6749 §5.2: whatever the value, the answer is a protocol answer and never echoes the input."""
    names = [
        "grant_type",
        "scope",
        "code",
        "redirect_uri",
        "client_id",
        "token",
        "token_type_hint",
        "refresh_token",
    ]
    for name in names:
        for value in HOSTILE:
            data = {"grant_type": "client_credentials", "token": "unknown-token", name: value}
            response = form_post(client, url, data, auth=auth)
            assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, (name, value, response.content)
            assert response["Cache-Control"] == "no-store"
            text = response.content.decode()
            assert value not in text, name
            assert json.dumps(value)[1:-1] not in text, name
            for marker in INTERNALS:
                assert marker not in text, (name, value)


@pytest.mark.parametrize("token", [SCRIPT, "a\x00b", "x" * 5000, "e30.e30.", "Bearer"])
def test_userinfo_with_a_garbage_bearer_token_is_invalid_token(client, db, token):
    """RFC 6750 §3.1 invalid_token: 401 with a Bearer challenge, never a 500 or an echo."""
    response = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["Cache-Control"] == "no-store"
    assert SCRIPT.encode() not in response.content


# --- the authorization endpoint: HTML, so everything is escaped ----------------------------------


def assert_safe_page(response, *, sent=(), allowed_redirects=(REDIRECT_URI, "/accounts/login")):
    """Never a 500; a redirect goes only to the registered URI or to sign-in; a page echoes nothing raw."""
    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, response.content[:500]
    if response.status_code == HTTPStatus.FOUND:
        location = response["Location"]
        assert location.startswith(tuple(allowed_redirects)), location
        assert "\r" not in location and "\n" not in location
        return
    text = response.content.decode()
    for value in sent:
        if set(value) & set("<>\"'"):
            assert value not in text  # markup-bearing input only ever appears HTML-escaped
    for marker in INTERNALS[:2]:
        assert marker not in text


@pytest.fixture
def authorization(confidential_client):
    return AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)


@pytest.mark.parametrize(
    "name",
    [
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "response_type",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "resource",
        "response_mode",
        "claims",
        "ui_locales",
    ],
)
def test_hostile_authorization_parameters_give_a_safe_answer(browser, authorization, name):
    """RFC 6749 §4.1.2.1 and §10.14: an error page or an error redirect to the registered URI, never a 500."""
    for value in HOSTILE:
        assert_safe_page(browser.get(authorization.url(**{name: value})), sent=[value])


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "state", "prompt"])
def test_hostile_authorization_parameters_are_safe_without_a_session(client, authorization, name):
    """RFC 6749 §4.1.2.1: the same holds before sign-in, including for prompt=none."""
    for value in HOSTILE:
        assert_safe_page(client.get(authorization.url(**{name: value})), sent=[value])
        silent = {"prompt": "none", name: value} if name != "prompt" else {"prompt": f"none {value}"}
        assert_safe_page(client.get(authorization.url(**silent)), sent=[value])


def test_script_in_state_is_escaped_on_the_consent_page(browser, authorization):
    """RFC 6749 §10.14: the state is carried through the consent form, HTML-escaped."""
    response = browser.get(authorization.url(state=SCRIPT))
    assert response.status_code == HTTPStatus.OK
    assert SCRIPT.encode() not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_script_in_state_is_url_encoded_in_the_redirect(browser, authorization):
    """RFC 6749 §4.1.2: the state comes back exactly, and URL-encoded."""
    response = browser.get(authorization.url(state=SCRIPT, prompt="none"))
    assert response.status_code == HTTPStatus.FOUND
    assert SCRIPT not in response["Location"]
    assert "state=%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in response["Location"]


@pytest.mark.parametrize("name", ["redirect_uri", "client_id"])
def test_script_in_client_id_or_redirect_uri_is_an_escaped_error_page(browser, authorization, name):
    """RFC 6749 §4.1.2.1: an invalid client or redirect URI gets an escaped error page, not a redirect."""
    response = browser.get(authorization.url(**{name: SCRIPT}))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert response.templates[0].name == "oauth/error.html"
    assert SCRIPT.encode() not in response.content


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "state", "scope", "response_type", "nonce"])
def test_repeated_authorization_parameters_get_an_error_page(browser, authorization, name):
    """RFC 6749 §3.1: parameters MUST NOT be included more than once; the request cannot be trusted."""
    value = {"client_id": authorization.client_id, "redirect_uri": REDIRECT_URI}.get(name, "openid")
    response = browser.get(authorization.url() + "&" + urlencode({name: value}))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert response.templates[0].name == "oauth/error.html"


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "state", "nonce", "code_challenge", "scope"])
def test_nul_in_authorization_parameters_gets_an_error_page(browser, authorization, name):
    """RFC 6749 Appendix A: no parameter syntax admits NUL; it never reaches a redirect or the database."""
    response = browser.get(authorization.url(**{name: "a\x00b"}))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response


def test_nul_in_the_consent_form_gets_an_error_page(browser, authorization):
    """RFC 6749 Appendix A: the consent POST is checked like the GET."""
    form = browser.get(authorization.url()).context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(allow="Authorize", nonce="a\x00b")
    response = browser.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response


@pytest.mark.parametrize("raw", ["client_id=%FF%FE", "state=%C0%AF", "%FF=1", "scope=%E2%28%A1"])
def test_invalid_utf8_in_the_authorization_query_is_never_a_server_error(browser, authorization, raw):
    """RFC 3986 §2.5: percent-encoded octets that are not UTF-8 are refused or replaced, never a 500."""
    assert_safe_page(browser.get(authorization.url() + "&" + raw))


def test_huge_authorization_request_is_never_a_server_error(browser, authorization):
    """RFC 6749 §4.1.2.1: a giant request is an error, not a crash."""
    response = browser.get(authorization.url(state="S" * 20_000, nonce="N" * 20_000, scope="openid " * 2_000))
    assert_safe_page(response)


def test_authorization_request_without_parameters_is_an_error_page(browser):
    """RFC 6749 §4.1.2.1: no client_id means no redirect; the user sees an error page."""
    response = browser.get("/oauth/authorize")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.templates[0].name == "oauth/error.html"


@pytest.mark.parametrize("url", ["/accounts/login", "/oauth/authorize", "/oauth/logout"])
@pytest.mark.parametrize("problem", ["oversized", "too many fields"])
def test_oversized_or_overfull_forms_get_the_400_page(browser, settings, url, problem):
    """Django's request limits on the HTML endpoints end in our 400 page, never a 500."""
    if problem == "oversized":
        body = "state=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    else:
        body = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    browser.raise_request_exception = False
    response = post_raw(browser, url, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.templates[0].name == "oauth/error.html"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("url", ["/accounts/login", "/oauth/authorize", "/.well-known/openid-configuration"])
def test_a_foreign_host_header_gets_the_400_page(client, db, url):
    """RFC 9110 §7.2: a request naming a host not in ALLOWED_HOSTS is refused (no host-header poisoning)."""
    client.raise_request_exception = False
    response = client.get(url, HTTP_HOST="evil.example")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"evil.example" not in response.content


# --- logout and unknown URLs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["client_id", "id_token_hint", "post_logout_redirect_uri", "state"])
def test_hostile_logout_parameters_give_a_safe_answer(browser, confidential_client, name):
    """RP-Initiated Logout §2/§3: the logout endpoint checks its input like the authorization endpoint."""
    for value in HOSTILE:
        params = {"client_id": confidential_client.client_id, name: value}
        response = browser.get("/oauth/logout?" + urlencode(params))
        assert_safe_page(response, sent=[value], allowed_redirects=())


@pytest.mark.parametrize("name", ["client_id", "post_logout_redirect_uri", "state"])
def test_nul_in_logout_parameters_gets_an_error_page(browser, confidential_client, name):
    """RP-Initiated Logout §2: NUL is no valid value; it gets an error page, not a 500 or a redirect."""
    params = {"client_id": confidential_client.client_id, name: "a\x00b"}
    response = browser.get("/oauth/logout?" + urlencode(params))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/oauth/nope",
        "/oauth/tokens",
        "/.well-known/nope",
        "/.well-known/openid-configuration/extra",
        "/accounts/nope",
        "/" + quote(SCRIPT),
        "/static/../uaa/settings.py",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_unknown_urls_get_the_404_page(client, db, path):
    """RFC 9110 §15.5.5: an unknown URL is a 404 page, our own, escaped, and nothing else."""
    response = client.get(path)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"].startswith("text/html")
    assert response.templates[0].name == "oauth/error.html"
    assert SCRIPT.encode() not in response.content
    assert b"SECRET_KEY" not in response.content


# --- a seeded fuzz corpus over every endpoint (tests/uaa/fuzz.py) ----------------------------------


def _send(http, case):
    extra = dict(case.headers)
    extra["QUERY_STRING"] = case.query.decode("iso-8859-1")  # PEP 3333: what a WSGI server hands over
    if case.content_type is not None:
        extra["CONTENT_TYPE"] = case.content_type
    return http.generic(case.method, case.endpoint.path, case.body, content_type=case.content_type, **extra)


def _problems(case, response, records):
    """What is wrong with an answer: a 5xx, an ERROR record, or (JSON endpoints) an error not §5.2-shaped."""
    problems = []
    if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        problems.append(f"status {response.status_code}: {response.content[:200]!r}")
    problems += [
        f"{r.levelname} {r.name}: {r.getMessage()[:200]}" for r in records if r.levelno >= logging.ERROR
    ]
    if b"Traceback" in response.content or b'File "' in response.content:
        problems.append("a traceback in the body")
    if case.endpoint.json and response.status_code >= HTTPStatus.BAD_REQUEST:
        if not response.get("Content-Type", "").startswith("application/json"):
            problems.append(f"error answered as {response.get('Content-Type')}")
        elif case.method != "HEAD" and not isinstance(
            json.loads(response.content or b"{}").get("error"), str
        ):
            problems.append("error body without an error code")
        if response.get("Cache-Control") != "no-store":
            problems.append("error without Cache-Control: no-store")
        if response.status_code == HTTPStatus.UNAUTHORIZED and "WWW-Authenticate" not in response:
            problems.append("401 without WWW-Authenticate")
    return problems


def test_the_fuzz_corpus_is_reproducible_and_covers_every_endpoint():
    """The corpus is seeded: the same seed gives the same cases, so a failure can be replayed."""
    context = {"client_id": "c", "redirect_uri": REDIRECT_URI, "auth": "Basic Yzpz"}
    first, second = fuzz.corpus(**context), fuzz.corpus(**context)
    assert first == second
    assert fuzz.corpus(**context, seed=fuzz.SEED + 1) != first
    assert 300 <= len(first) <= 2000
    names = {case.endpoint.name for case in first}
    assert names >= {"authorize", "token", "introspect", "revoke", "userinfo", "jwks", "discovery", "logout"}
    assert names >= {"login", "mfa", "security", "admin_login"}


def test_no_fuzz_case_gets_a_server_error_or_logs_an_error(
    client, browser, service_client, confidential_client, caplog
):
    """RFC 6749 §5.2 and RFC 9110 §15.5: malformed input of any kind is the client's error — a 4xx (on the
    OAuth JSON endpoints: ``invalid_request``/``invalid_client`` in the §5.2 shape, 401 with
    WWW-Authenticate) — never a 5xx, and never an ERROR record with a traceback in the server's log."""
    cases = fuzz.corpus(
        client_id=confidential_client.client_id,
        redirect_uri=quote(REDIRECT_URI, safe=""),
        auth=service_client.basic,
    )
    client.raise_request_exception = False
    browser.raise_request_exception = False
    failures = []
    for number, case in enumerate(cases):
        http = browser if number % 2 and not case.endpoint.json else client
        caplog.clear()
        with caplog.at_level(logging.INFO):
            response = _send(http, case)
        failures += [f"{case.label}: {problem}" for problem in _problems(case, response, caplog.records)]
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:60])
