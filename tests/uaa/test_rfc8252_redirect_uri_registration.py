"""One redirect URI rule for every way a client is registered or changed (RFC 8252, RFC 9700 §4.1.1).

The red team's mismatch: the admin API allowed http on 127.0.0.1 and [::1] only, while the Django admin,
``manage.py create_client`` and ``uaa.oauth.services`` (django-oauth-toolkit's validator) took http to any
host once ``UAA_REDIRECT_URI_SCHEMES`` named http, so a code could be sent in plain text over the network
(RFC 9700 §2.1, §4.1.3). The API read ``http://[::1].evil.com/cb`` as a loopback URI (urlsplit takes the
host for ``::1`` and drops what follows ``]``), and refused the private-use schemes the operations guide
says may be enabled for native apps (RFC 8252 §7.1). Now ``uaa/oauth/rfc8252.py check_redirect_uri`` is the
one rule, applied by ``Client.clean``; each way in below (and the admin API's, in
tests/api/test_api_redirect_uri_rule.py) performs the attack.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client as HttpClient

from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize
from uaa.oauth import rfc8252
from uaa.oauth.models import Client
from uaa.oauth.services import register_client, update_client

SCHEMES = ["https", "http", "com.example.app"]
NATIVE_URI = "com.example.app:/oauth2redirect"

# Plain http to a host on the network, and hosts that urlsplit reads as a loopback literal.
ATTACKS = [
    "http://evil.example/cb",
    "http://[::1].evil.example/cb",
    "http://[::1]evil.example/cb",
    "http://127.0.0.1@evil.example/cb",
    "http://[::1]@evil.example/cb",
]


@pytest.fixture
def allow_native_scheme(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": SCHEMES}


def _native(**overrides):
    return {
        "name": "Desktop app",
        "client_type": Client.CLIENT_PUBLIC,
        "grant_type": Client.GRANT_AUTHORIZATION_CODE,
        **overrides,
    }


# --- the rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        *ATTACKS,
        "http://localhost/cb",  # RFC 8252 §8.3: NOT RECOMMENDED
        "http://127.0.0.2/cb",
        "http://[0:0:0:0:0:0:0:1]/cb",
        "https://user:pass@rp.example/cb",  # RFC 9700 §4.1.1: no userinfo
        "https://rp.example@evil.example/cb",
        "https://rp.example\\@evil.example/cb",
        "https://rp.example/cb#",  # RFC 6749 §3.1.2: no fragment, not even an empty one
        "https://rp.example/cb#x",
        "https://*.rp.example/cb",  # RFC 9700 §2.1: exact matching, no wildcards
        "https://rp.example:/cb",  # an empty port: another spelling
        "https://rp.example:0/cb",
        "https://rp.example:65536/cb",
        "https://rp..example/cb",
        "https://rp.example./cb",
        "https://r%70.example/cb",
        "https://[fe80::1%25eth0]/cb",  # a zone ID
        "https://[v1.x]/cb",
        "https://[::1/cb",
        "https:/rp.example/cb",
        "https:///cb",
        "HTTPS://rp.example/cb",
        "https://rp.example/c b",
        "https://rp.example/cb\n",
        "https://rp.example/caf\u00e9",
        "https://rp.example/%zz",
        "https://rp.example/<script>",
        "ftp://rp.example/cb",
        "javascript:/alert(1)",
        "myapp:/cb",  # not a listed scheme (nor reverse-DNS)
        "com.example.app://cb",  # §7.1: one slash, no authority
        "com.example.app:cb",
        "com.example.app:",
        "https://" + "a" * 2048 + ".example/",
    ],
)
def test_the_rule_refuses(uri):
    with pytest.raises(ValidationError):
        rfc8252.check_redirect_uri(uri, schemes=[*SCHEMES, "myapp"], native=True)


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.example/cb",
        "https://rp.example:8443/cb?tenant=a",
        "https://localhost:8443/cb",
        "https://[2001:db8::1]/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8080/cb",
        "http://[::1]/cb",
        "http://[::1]:49152/cb",
        NATIVE_URI,
        "com.example.app:/oauth2redirect/example-provider",
    ],
)
def test_the_rule_accepts(uri):
    rfc8252.check_redirect_uri(uri, schemes=SCHEMES, native=True)


def test_a_private_use_scheme_must_be_a_reversed_domain_name():
    """RFC 8252 §7.1: "a URI scheme name based on a domain name under their control, expressed in reverse
    order"; an operator who lists ``myapp`` or ``javascript`` does not make it one."""
    for scheme in ("myapp", "javascript", "data", "file", "com..example", "-com.example"):
        with pytest.raises(ValidationError):
            rfc8252.check_redirect_uri(f"{scheme}:/cb", schemes=[scheme], native=True)


def test_a_private_use_scheme_is_for_native_apps_only():
    """RFC 8252 §7.1 / §8.4: native apps are public clients; a web client redirects over https."""
    with pytest.raises(ValidationError):
        rfc8252.check_redirect_uri(NATIVE_URI, schemes=SCHEMES, native=False)


def test_http_needs_the_operator_to_allow_it():
    """docs/operations.md: add http to UAA_REDIRECT_URI_SCHEMES only to accept loopback redirects."""
    with pytest.raises(ValidationError):
        rfc8252.check_redirect_uri("http://127.0.0.1/cb", schemes=["https"], native=True)


# --- each way in --------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ATTACKS)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
def test_the_django_admin_refuses(db, uri, field):
    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {
        "name": "Desktop app",
        "client_type": Client.CLIENT_PUBLIC,
        "authorization_grant_type": Client.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": "http://127.0.0.1/cb",
        "post_logout_redirect_uris": "",
        "require_pkce": "True",
        "algorithm": Client.RS256,
        "token_endpoint_auth_method": Client.CLIENT_SECRET,
        "_save": "Save",
        field: uri,
    }
    response = http.post("/admin/oauth/client/add/", form)
    assert response.status_code == HTTPStatus.OK
    assert not Client.objects.filter(name="Desktop app").exists()
    assert field in response.context["adminform"].form.errors


def test_the_django_admin_registers_a_native_apps_private_use_scheme(db, allow_native_scheme):
    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {
        "name": "Phone app",
        "client_type": Client.CLIENT_PUBLIC,
        "authorization_grant_type": Client.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": NATIVE_URI,
        "post_logout_redirect_uris": "",
        "require_pkce": "True",
        "algorithm": Client.RS256,
        "token_endpoint_auth_method": Client.CLIENT_SECRET,
        "_save": "Save",
    }
    response = http.post("/admin/oauth/client/add/", form)
    assert response.status_code == HTTPStatus.OK
    assert Client.objects.get(name="Phone app").redirect_uris == NATIVE_URI


@pytest.mark.parametrize("uri", ATTACKS)
def test_create_client_refuses(db, uri):
    with pytest.raises(CommandError, match=re.escape("redirect_uris")):
        call_command("create_client", "--name", "Desktop app", "--public", "--redirect-uri", uri)
    assert not Client.objects.filter(name="Desktop app").exists()


@pytest.mark.parametrize("uri", ATTACKS)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
def test_register_client_refuses(db, uri, field):
    with pytest.raises(ValidationError) as raised:
        register_client(**_native(**{"redirect_uris": ["http://127.0.0.1/cb"], field: [uri]}))
    assert field in raised.value.message_dict
    assert not Client.objects.filter(name="Desktop app").exists()


@pytest.mark.parametrize("uri", ATTACKS)
def test_update_client_refuses(client_factory, uri):
    registered = client_factory(name="Web app")
    with pytest.raises(ValidationError):
        update_client(client=registered.client, changes={"redirect_uris": uri}, actor="admin")
    registered.client.refresh_from_db()
    assert registered.client.redirect_uris == "https://rp.example.com/callback"


def test_a_native_app_gets_its_code_at_its_private_use_scheme(browser, allow_native_scheme):
    """RFC 8252 §7.1: the authorization server redirects to the registered private-use URI, exactly."""
    issued = register_client(**_native(redirect_uris=[NATIVE_URI]))
    request = AuthorizationRequest(client_id=issued.client.client_id, redirect_uri=NATIVE_URI)
    assert authorize(browser, request)["code"]
    other = browser.get(request.url(redirect_uri="com.example.app:/oauth2redirect/other"))
    assert other.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in other
