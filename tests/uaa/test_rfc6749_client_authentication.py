"""RFC 6749 §2.3 client authentication at the token endpoint, and its §5.2 invalid_client answers."""

from __future__ import annotations

import base64
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.oauth_client import basic_auth, form_post
from uaa.oauth.services import rotate_client_secret

CLIENT_CREDENTIALS = {"grant_type": "client_credentials"}


def _token(data, auth=None):
    return form_post(HttpClient(), "/oauth/token", data, auth=auth)


def _assert_invalid_client(response, *, status=HTTPStatus.UNAUTHORIZED):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()
    assert response["Cache-Control"] == "no-store"
    if status == HTTPStatus.UNAUTHORIZED:
        assert response["WWW-Authenticate"].startswith("Basic")


def test_right_secret_via_basic_authenticates(service_client):
    """RFC 6749 §2.3.1: clients in possession of a password MUST support HTTP Basic."""
    response = _token(CLIENT_CREDENTIALS, auth=service_client.basic)
    assert response.status_code == HTTPStatus.OK, response.content


def test_right_secret_in_the_body_authenticates(service_client):
    """RFC 6749 §2.3.1: the server MAY support client_id and client_secret in the request body."""
    data = {
        **CLIENT_CREDENTIALS,
        "client_id": service_client.client_id,
        "client_secret": service_client.secret,
    }
    assert _token(data).status_code == HTTPStatus.OK


def test_wrong_secret_via_basic_is_401_invalid_client_with_www_authenticate(service_client):
    """RFC 6749 §5.2: failed Basic authentication MUST answer 401 with a WWW-Authenticate header."""
    response = _token(CLIENT_CREDENTIALS, auth=basic_auth(service_client.client_id, "wrong-secret"))
    _assert_invalid_client(response)
    assert 'realm="uaa"' in response["WWW-Authenticate"]


def test_wrong_secret_in_the_body_is_invalid_client(service_client):
    """RFC 6749 §5.2: invalid_client when client authentication failed."""
    data = {**CLIENT_CREDENTIALS, "client_id": service_client.client_id, "client_secret": "wrong-secret"}
    _assert_invalid_client(_token(data))


def test_another_clients_secret_is_invalid_client(service_client, client_factory):
    """RFC 6749 §2.3.1: the secret authenticates only the client it was issued to."""
    other = client_factory(name="Other", grant_type="client-credentials", redirect_uris=[])
    _assert_invalid_client(
        _token(CLIENT_CREDENTIALS, auth=basic_auth(service_client.client_id, other.secret))
    )


def test_unknown_client_gets_the_same_answer_as_a_wrong_secret(service_client):
    """RFC 6749 §5.2 invalid_client ("unknown client"); the answer does not reveal which clients exist."""
    unknown = _token(CLIENT_CREDENTIALS, auth=basic_auth("no-such-client", "whatever"))
    wrong = _token(CLIENT_CREDENTIALS, auth=basic_auth(service_client.client_id, "whatever"))
    _assert_invalid_client(unknown)
    assert unknown.json() == wrong.json()


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode(b"\x00:\x00").decode(),
        "Basic ",
        "Basic",
        "Basic a",
        "Basic " + "A" * 5000,
    ],
)
def test_malformed_basic_header_is_401_invalid_client_not_a_server_error(service_client, header):
    """RFC 6749 §2.3.1 and §5.2: a Basic header that cannot be decoded is a failed authentication (401)."""
    _assert_invalid_client(_token(CLIENT_CREDENTIALS, auth=header))


def test_basic_credentials_are_form_urlencoded_before_base64(client_factory):
    """RFC 6749 §2.3.1: client_id and client_secret are form-urlencoded, then joined and base64 encoded."""
    registered = client_factory(name="Service", grant_type="client-credentials", redirect_uris=[])
    secret = registered.secret
    encoded = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
    assert _token(CLIENT_CREDENTIALS, auth=f"Basic {encoded}").status_code == HTTPStatus.OK


def test_missing_credentials_for_a_confidential_client_is_invalid_client(service_client):
    """RFC 6749 §3.2.1: confidential clients MUST authenticate when using the token endpoint."""
    _assert_invalid_client(_token({**CLIENT_CREDENTIALS, "client_id": service_client.client_id}))


def test_empty_secret_for_a_confidential_client_is_invalid_client(service_client):
    """RFC 6749 §2.3.1: an empty secret is not the client's secret."""
    data = {**CLIENT_CREDENTIALS, "client_id": service_client.client_id, "client_secret": ""}
    _assert_invalid_client(_token(data))
    _assert_invalid_client(_token(CLIENT_CREDENTIALS, auth=basic_auth(service_client.client_id, "")))


def test_no_client_at_all_is_invalid_client(db):
    """RFC 6749 §5.2: invalid_client when no client authentication is included."""
    _assert_invalid_client(_token(CLIENT_CREDENTIALS))


@pytest.mark.parametrize("body_secret", [None, "wrong"])
def test_basic_and_body_naming_different_clients_is_invalid_client(
    service_client, client_factory, body_secret
):
    """RFC 6749 §2.3: one client, authenticated one way; a body client_id naming another client fails
    (invalid_client), and a body secret beside Basic is a second method (invalid_request)."""
    other = client_factory(name="Other", grant_type="client-credentials", redirect_uris=[])
    data = {**CLIENT_CREDENTIALS, "client_id": other.client_id}
    if body_secret:
        data["client_secret"] = body_secret
        _assert_invalid_request(_token(data, auth=service_client.basic))
        return
    _assert_invalid_client(_token(data, auth=service_client.basic))


def test_body_client_id_naming_the_basic_client_is_fine(service_client):
    """RFC 6749 §2.3.1 and §3.2.1: client_id in the body merely repeats who the Basic credentials name."""
    data = {**CLIENT_CREDENTIALS, "client_id": service_client.client_id}
    assert _token(data, auth=service_client.basic).status_code == HTTPStatus.OK


def test_rotated_secret_replaces_the_old_one_at_once(service_client):
    """RFC 6749 §2.3.1: only the current secret authenticates the client."""
    new_secret = rotate_client_secret(client=service_client.client)
    _assert_invalid_client(_token(CLIENT_CREDENTIALS, auth=service_client.basic))
    response = _token(CLIENT_CREDENTIALS, auth=basic_auth(service_client.client_id, new_secret))
    assert response.status_code == HTTPStatus.OK


def test_secret_is_stored_as_a_digest_never_in_clear(service_client):
    """RFC 6749 §10.1 and STYLE: client secrets are stored as digests and shown raw exactly once."""
    service_client.client.refresh_from_db()
    assert service_client.secret not in service_client.client.client_secret
    assert service_client.client.client_secret.startswith("uaa_sha256$")


def test_failed_authentication_never_logs_the_secret(service_client, caplog):
    """RFC 6749 §10.1: secrets are kept confidential; STYLE: never log secrets or Authorization headers."""
    wrong = "wrong-secret-" + "x" * 20
    header = basic_auth(service_client.client_id, wrong)
    with caplog.at_level("DEBUG"):
        _token(CLIENT_CREDENTIALS, auth=header)
        _token({**CLIENT_CREDENTIALS, "client_id": service_client.client_id, "client_secret": wrong})
    assert wrong not in caplog.text
    assert header.split()[1] not in caplog.text


def test_public_client_is_identified_by_client_id_without_a_secret(browser, public_client):
    """RFC 6749 §2.1 and §3.2.1: a public client sends client_id to identify itself; it has no secret."""
    data = {"grant_type": "authorization_code", "code": "x", "client_id": public_client.client_id}
    response = _token(data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"  # authenticated; the code "x" is what is wrong


def test_public_client_sending_a_secret_is_invalid_client(public_client):
    """RFC 6749 §2.3: a public client has no secret, so any secret it sends is wrong."""
    data = {"grant_type": "authorization_code", "code": "x", "client_id": public_client.client_id}
    _assert_invalid_client(_token({**data, "client_secret": "guess"}))


def test_unknown_public_client_id_is_invalid_client(db):
    """RFC 6749 §5.2: invalid_client for an unknown client."""
    data = {"grant_type": "authorization_code", "code": "x", "client_id": "no-such-client"}
    _assert_invalid_client(_token(data))


def test_a_public_client_cannot_authenticate_with_an_empty_secret(public_client):
    """RFC 6749 §2.3.1: a public client has no secret; "client_id:" with an empty password is not one."""
    from tests.oauth_client import basic_auth, form_post

    response = form_post(
        HttpClient(), "/oauth/revoke", {"token": "x"}, auth=basic_auth(public_client.client_id, "")
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"


# --- one authentication method per request (RFC 6749 §2.3) -------------------------------------------
# The attacker is another registered client (or anyone holding client A's secret): they must not get a
# token, a revocation or an introspection answer for client K by adding K's credentials beside A's.


@pytest.fixture
def signing_key():
    from tests.uaa.client_assertions import new_key

    return new_key()


@pytest.fixture
def jwt_client(db, signing_key):
    from tests.conftest import RegisteredClient
    from tests.uaa.client_assertions import public_set
    from uaa.oauth.models import Client
    from uaa.oauth.services import register_client

    issued = register_client(
        name="Signed service",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks=public_set(signing_key),
    )
    return RegisteredClient(client=issued.client, secret=issued.client_secret)


def _assert_invalid_request(response):
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_request"
    assert "access_token" not in response.json() and "active" not in response.json()
    assert response["Cache-Control"] == "no-store"


ENDPOINTS = {
    "/oauth/token": CLIENT_CREDENTIALS,
    "/oauth/revoke": {"token": "some-token"},
    "/oauth/introspect": {"token": "some-token"},
}


@pytest.mark.parametrize("url", list(ENDPOINTS))
def test_basic_for_one_client_and_an_assertion_for_another_is_invalid_request(
    url, service_client, jwt_client, signing_key
):
    """RFC 6749 §2.3: the client MUST NOT use more than one authentication method in each request.
    Today's attack: Basic for client A plus a client_assertion for K issued a token to K."""
    from tests.uaa.client_assertions import assertion
    from uaa.oauth.rfc7523 import ASSERTION_TYPE

    data = {
        **ENDPOINTS[url],
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(jwt_client.client_id, signing_key),
    }
    _assert_invalid_request(form_post(HttpClient(), url, data, auth=service_client.basic))


@pytest.mark.parametrize("url", list(ENDPOINTS))
@pytest.mark.parametrize("basic_secret", ["right", "wrong"])
def test_basic_and_a_secret_in_the_body_is_invalid_request(url, service_client, client_factory, basic_secret):
    """RFC 6749 §2.3.1 and §2.3: Basic or the body, never both; a failed Basic header does not fall back
    to another client's secret in the body."""
    other = client_factory(name="Other", grant_type="client-credentials", redirect_uris=[])
    auth = service_client.basic if basic_secret == "right" else basic_auth(service_client.client_id, "x")
    data = {**ENDPOINTS[url], "client_id": other.client_id, "client_secret": other.secret}
    _assert_invalid_request(form_post(HttpClient(), url, data, auth=auth))
    same = {**ENDPOINTS[url], "client_id": service_client.client_id, "client_secret": service_client.secret}
    _assert_invalid_request(form_post(HttpClient(), url, same, auth=service_client.basic))


@pytest.mark.parametrize("url", list(ENDPOINTS))
def test_an_assertion_with_a_secret_in_the_body_is_invalid_request(
    url, service_client, jwt_client, signing_key
):
    """RFC 6749 §2.3 and RFC 7523 §2.2: a client assertion is the one method of its request."""
    from tests.uaa.client_assertions import assertion
    from uaa.oauth.rfc7523 import ASSERTION_TYPE

    data = {
        **ENDPOINTS[url],
        "client_id": service_client.client_id,
        "client_secret": service_client.secret,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(jwt_client.client_id, signing_key),
    }
    _assert_invalid_request(form_post(HttpClient(), url, data))
