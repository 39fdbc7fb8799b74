"""Clients in Django admin and from the shell: the secret is shown exactly once and stored hashed."""

import io
import json
import logging
import re
from http import HTTPStatus

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client as HttpClient

from accounts.models import User
from tests.conftest import REDIRECT_URI, second_step
from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, basic_auth, exchange_code, form_post
from tokens.models import LedgerRecord, SigningKey
from uaa.oauth.models import Client

CHANGELIST = "/admin/oauth/client/"
ADD = CHANGELIST + "add/"
SECRET = re.compile(rb'<code id="client-secret">([^<]+)</code>')
CLIENT_ID = re.compile(rb'<code id="client-id">([^<]+)</code>')


@pytest.fixture
def admin_browser(db):
    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    return http


def staff_with(*codenames):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="oauth", codename__in=codenames)
    )
    http = HttpClient()
    http.force_login(user)
    return http


def client_form(**overrides):
    data = {
        "name": "Billing service",
        "client_type": Client.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Client.GRANT_CLIENT_CREDENTIALS,
        "redirect_uris": "",
        "post_logout_redirect_uris": "",
        "algorithm": Client.RS256,
        "allowed_resources": "https://billing.example.com",
        "default_audience": "https://billing.example.com",
        "allowed_scopes": "",
        "allowed_origins": "",
        "token_endpoint_auth_method": Client.CLIENT_SECRET,
        "_save": "Save",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def client_credentials(client_id, secret):
    return form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=basic_auth(client_id, secret)
    )


def add_client(http, **overrides):
    response = http.post(ADD, client_form(**overrides))
    assert response.status_code == HTTPStatus.OK, response.content[:500]
    client_id = CLIENT_ID.search(response.content).group(1).decode()
    match = SECRET.search(response.content)
    return response, Client.objects.get(client_id=client_id), match.group(1).decode() if match else None


def rotate(http, client):
    return http.post(CHANGELIST, {"action": "rotate_secret", "_selected_action": [client.pk], "index": 0})


# --- adding a client -----------------------------------------------------------------------------


def test_adding_a_confidential_client_shows_its_secret_once(admin_browser):
    """DESIGN (admin): the secret is shown on creation, with a warning that it will not be shown again."""
    response, client, secret = add_client(admin_browser)
    assert secret and len(secret) >= 32
    assert response["Cache-Control"] == "no-store"
    assert b"will not be shown again" in response.content
    assert client.name == "Billing service"


def test_the_secret_is_stored_hashed(admin_browser):
    """STYLE (secrets): client secrets are stored as digests, never raw."""
    _, client, secret = add_client(admin_browser)
    assert secret not in client.client_secret
    assert identify_hasher(client.client_secret).algorithm == "uaa_sha256"
    assert client.hash_client_secret


def test_the_shown_secret_works_at_the_token_endpoint(admin_browser):
    """RFC 6749 §2.3.1 / §4.4: the new client authenticates with the secret it was shown."""
    _, client, secret = add_client(admin_browser)
    response = client_credentials(client.client_id, secret)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["token_type"] == "Bearer"


def test_the_shown_secret_works_for_the_code_flow(admin_browser, browser):
    """RFC 6749 §4.1.3: a code-flow client added in the admin redeems codes with its secret."""
    _, client, secret = add_client(
        admin_browser,
        name="Web app",
        authorization_grant_type=Client.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
        default_audience="",
    )
    request = AuthorizationRequest(client_id=client.client_id, redirect_uri=REDIRECT_URI)
    params = authorize(browser, request)
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=basic_auth(client.client_id, secret)
    )
    assert response.status_code == HTTPStatus.OK, response.content


def test_a_public_client_gets_no_secret(admin_browser):
    """RFC 6749 §2.1: public clients cannot keep a secret; the page says PKCE instead."""
    response, client, secret = add_client(
        admin_browser,
        name="SPA",
        client_type=Client.CLIENT_PUBLIC,
        authorization_grant_type=Client.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
    )
    assert secret is None
    assert b"public client" in response.content
    assert client.client_type == Client.CLIENT_PUBLIC


def test_a_client_added_in_the_admin_has_its_registration_record(admin_browser):
    """DESIGN (audit ledger): client changes are recorded; a client added in the admin gets the same
    ``client.registered`` record as one registered from the shell, naming the admin, and never its secret."""
    _, client, secret = add_client(admin_browser)
    bodies = [
        json.loads(body)
        for body in LedgerRecord.objects.filter(event="client.registered").values_list("body", flat=True)
    ]
    (registered,) = [body for body in bodies if body["client_id"] == client.client_id]
    admin = User.objects.get(is_superuser=True)
    assert registered["sub"] == str(admin.pk)
    assert registered["detail"]["grant_type"] == Client.GRANT_CLIENT_CREDENTIALS
    assert registered["detail"]["allowed_resources"] == ["https://billing.example.com"]
    assert secret not in "".join(LedgerRecord.objects.values_list("body", flat=True))


def test_the_change_page_never_shows_the_secret(admin_browser):
    """DESIGN (admin): shown once means once: not on the change page, the list or the history."""
    _, client, secret = add_client(admin_browser)
    for url in (
        f"{CHANGELIST}{client.pk}/change/",
        CHANGELIST,
        f"{CHANGELIST}{client.pk}/history/",
        f"{CHANGELIST}?q={client.client_id}",
    ):
        response = admin_browser.get(url)
        assert response.status_code == HTTPStatus.OK, url
        assert secret.encode() not in response.content, url
        assert client.client_secret.encode() not in response.content, url  # nor its digest


def test_saving_the_change_page_keeps_the_secret(admin_browser):
    """Editing a client (say its name) neither shows nor changes the secret."""
    _, client, secret = add_client(admin_browser)
    response = admin_browser.post(f"{CHANGELIST}{client.pk}/change/", client_form(name="Renamed"))
    assert response.status_code == HTTPStatus.FOUND
    assert secret.encode() not in response.content
    client.refresh_from_db()
    assert client.name == "Renamed"
    assert client_credentials(client.client_id, secret).status_code == HTTPStatus.OK


def test_the_secret_is_never_logged(admin_browser, caplog):
    """STYLE (logging): never log secrets."""
    with caplog.at_level(logging.DEBUG):
        _, _, secret = add_client(admin_browser)
    assert secret not in caplog.text


@pytest.mark.parametrize(
    "overrides",
    [
        {"authorization_grant_type": Client.GRANT_AUTHORIZATION_CODE, "redirect_uris": ""},
        {"authorization_grant_type": Client.GRANT_AUTHORIZATION_CODE, "redirect_uris": "javascript:alert(1)"},
        {"client_type": Client.CLIENT_PUBLIC},  # client credentials need a confidential client
        {"authorization_grant_type": "password"},
        {"algorithm": "HS256"},
        {"default_audience": "x" * 1001},
        {"default_audience": "https://payroll.internal"},  # not a resource this client may request
        {"allowed_resources": "https://billing.example.com not-a-uri"},
        {"allowed_scopes": "api.admin"},  # not a scope UAA offers
        {"allowed_scopes": "openid"},  # a user scope: no client registers it
    ],
)
def test_an_invalid_client_is_refused_with_the_form_and_no_secret(admin_browser, overrides):
    """The admin form validates like the model; nothing is created and no secret is issued."""
    response = admin_browser.post(ADD, client_form(**overrides))
    assert response.status_code == HTTPStatus.OK
    assert SECRET.search(response.content) is None
    assert b"errornote" in response.content or b"errorlist" in response.content
    assert not Client.objects.exists()


def test_the_form_keeps_the_resources_a_client_may_request_apart_from_those_it_serves(admin_browser):
    """RFC 8707 (what the client may request tokens for) and RFC 7662 §4 (what it serves and may
    introspect for) are different lists, under different headings, with different labels."""
    page = admin_browser.get(ADD).content.decode()
    assert "Resources this client may request" in page
    assert "Resources this client serves" in page
    assert "Extra scopes this client may request" in page
    assert page.index("What this client may request") < page.index("What this client serves")


def test_the_admin_registers_resources_and_scopes_that_the_token_endpoint_honours(admin_browser, settings):
    """RFC 8707 §2 and RFC 6749 §3.3: what the admin lists is what the client gets, and nothing more."""
    settings.UAA_SCOPES = {**settings.UAA_SCOPES, "billing:read": "Read bills", "api.admin": "Admin"}
    reports = "https://reports.example.com"
    _, client, secret = add_client(
        admin_browser,
        allowed_resources=f"https://billing.example.com {reports}",
        allowed_scopes="billing:read",
    )
    assert client.requestable_resources == ["https://billing.example.com", reports]
    assert client.requestable_scopes == ["billing:read"]
    auth = basic_auth(client.client_id, secret)
    granted = {"grant_type": "client_credentials", "resource": reports, "scope": "billing:read"}
    assert form_post(HttpClient(), "/oauth/token", granted, auth=auth).status_code == HTTPStatus.OK
    for refused, error in (
        ({"resource": "https://payroll.internal"}, "invalid_target"),
        ({"scope": "api.admin"}, "invalid_scope"),
    ):
        response = form_post(HttpClient(), "/oauth/token", granted | refused, auth=auth)
        assert response.json()["error"] == error


# --- rotating the secret -------------------------------------------------------------------------


def test_rotating_the_secret_shows_a_new_one_and_the_old_one_stops_working(admin_browser):
    """DESIGN (admin): rotate secret shows the new secret once; the old one fails at once."""
    _, client, old = add_client(admin_browser)
    response = rotate(admin_browser, client)
    assert response.status_code == HTTPStatus.OK
    new = SECRET.search(response.content).group(1).decode()
    assert new != old
    assert b"previous secret no longer works" in response.content
    assert response["Cache-Control"] == "no-store"
    assert client_credentials(client.client_id, old).status_code == HTTPStatus.UNAUTHORIZED
    assert client_credentials(client.client_id, new).status_code == HTTPStatus.OK
    client.refresh_from_db()
    assert new not in client.client_secret


def test_rotating_needs_exactly_one_confidential_client(admin_browser, client_factory):
    """The action refuses several clients at once and public clients, and changes nothing."""
    first, second = (
        client_factory(name=name, grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
        for name in "AB"
    )
    public = client_factory(name="SPA", client_type=Client.CLIENT_PUBLIC)
    selected = [first.client.pk, second.client.pk]
    response = admin_browser.post(
        CHANGELIST, {"action": "rotate_secret", "_selected_action": selected}, follow=True
    )
    assert SECRET.search(response.content) is None
    assert b"exactly one" in response.content
    response = rotate(admin_browser, public.client)
    assert SECRET.search(response.content) is None
    for registered in (first, second):
        assert client_credentials(registered.client_id, registered.secret).status_code == HTTPStatus.OK


def test_view_only_staff_cannot_rotate_a_secret(client_factory):
    """Least privilege: rotating a secret changes the client and reveals a credential, so it needs change."""
    registered = client_factory(name="Billing", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
    viewer = staff_with("view_client")
    assert viewer.get(CHANGELIST).status_code == HTTPStatus.OK
    response = viewer.post(
        CHANGELIST, {"action": "rotate_secret", "_selected_action": [registered.client.pk]}
    )
    assert SECRET.search(response.content) is None
    assert client_credentials(registered.client_id, registered.secret).status_code == HTTPStatus.OK


def test_staff_with_change_permission_can_rotate(client_factory):
    """The change permission is what the rotate action needs."""
    registered = client_factory(name="Billing", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
    editor = staff_with("view_client", "change_client")
    response = rotate(editor, registered.client)
    assert SECRET.search(response.content) is not None


def test_staff_without_permission_cannot_add_clients(db):
    """Least privilege: adding a client needs the add permission."""
    viewer = staff_with("view_client")
    assert viewer.post(ADD, client_form()).status_code == HTTPStatus.FORBIDDEN
    assert not Client.objects.exists()


def test_the_admin_sends_anonymous_visitors_to_the_one_sign_in_page(client, db):
    """The admin signs in through the same sign-in page as everyone else, and comes back after."""
    response = client.get(CHANGELIST, follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login?next=/admin/oauth/client/"


def test_the_admin_refuses_signed_in_users_who_are_not_staff(browser):
    """Only staff reach the admin; a signed-in user without is_staff never sees the client list."""
    response = browser.get(CHANGELIST)
    assert response.status_code == HTTPStatus.FOUND
    assert not response["Location"].startswith(CHANGELIST)


# --- the client list ------------------------------------------------------------------------------


def test_the_list_shows_name_id_type_grant_redirects_trusted_and_created(admin_browser, client_factory):
    """DESIGN (admin): operators see what matters about each client at a glance."""
    registered = client_factory(name="Portal", trusted=True)
    response = admin_browser.get(CHANGELIST)
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    columns = [
        "name",
        "client_id",
        "client_type",
        "authorization_grant_type",
        "redirect_uris",
        "trusted",
        "created",
    ]
    for column in columns:
        assert f'class="sortable column-{column}' in page, column
    assert "Portal" in page
    assert registered.client_id in page
    assert "https://rp.example.com/callback" in page
    assert 'alt="True"' in page  # the trusted flag


@pytest.mark.parametrize("term", ["Portal", "portal", "rp-portal.example", "CLIENT_ID"])
def test_search_finds_clients_by_name_client_id_and_redirect_uri(admin_browser, client_factory, term):
    """DESIGN (admin): search by name, client_id or redirect URI."""
    portal = client_factory(name="Portal", redirect_uris=["https://rp-portal.example/cb"])
    other = client_factory(name="Other")
    term = portal.client_id if term == "CLIENT_ID" else term
    page = admin_browser.get(CHANGELIST, {"q": term}).content.decode()
    assert portal.client_id in page
    assert other.client_id not in page


# --- manage.py create_client ----------------------------------------------------------------------


def create_client(*args):
    out = io.StringIO()
    call_command("create_client", *args, stdout=out)
    return out.getvalue()


def test_create_client_prints_the_id_and_the_secret_once(db):
    """The shell equivalent of the admin: id and secret printed, the secret stored hashed and working."""
    output = create_client("--name", "Batch", "--grant", "client_credentials")
    client_id = re.search(r"client_id:\s+(\S+)", output).group(1)
    secret = re.search(r"client_secret:\s+(\S+)", output).group(1)
    client = Client.objects.get(client_id=client_id)
    assert client.name == "Batch"
    assert secret not in client.client_secret
    assert "shown only now" in output
    assert client_credentials(client_id, secret).status_code == HTTPStatus.OK


def test_create_client_json_output_is_machine_readable(db):
    """--json prints one JSON object with client_id and client_secret."""
    output = create_client(
        "--name", "Batch", "--grant", "client_credentials", "--json", "--audience", "https://api.example"
    )
    document = json.loads(output)
    assert set(document) == {"client_id", "client_secret"}
    client = Client.objects.get(client_id=document["client_id"])
    assert client.audiences == ["https://api.example"]
    assert client.requestable_resources == ["https://api.example"]  # the default is requestable
    assert client_credentials(document["client_id"], document["client_secret"]).status_code == HTTPStatus.OK


def test_create_client_for_a_public_spa_prints_no_secret(db):
    """RFC 6749 §2.1: a public client has no secret; --json says null."""
    document = json.loads(
        create_client("--name", "SPA", "--public", "--redirect-uri", "https://spa.example/cb", "--json")
    )
    assert document["client_secret"] is None
    assert Client.objects.get(client_id=document["client_id"]).client_type == Client.CLIENT_PUBLIC


def test_create_client_sets_every_option(db):
    """Every flag lands on the client."""
    args = ["--name", "Portal", "--redirect-uri", "https://portal.example/cb"]
    args += [
        "--redirect-uri",
        "https://portal.example/cb2",
        "--post-logout-redirect-uri",
        "https://portal.example/bye",
    ]
    document = json.loads(create_client(*args, "--trusted", "--algorithm", "ES256", "--json"))
    client = Client.objects.get(client_id=document["client_id"])
    assert client.redirect_uris.split() == ["https://portal.example/cb", "https://portal.example/cb2"]
    assert client.post_logout_redirect_uris == "https://portal.example/bye"
    assert client.trusted
    assert client.algorithm == "ES256"


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "Web"],  # the code grant needs a redirect URI
        ["--name", "Web", "--redirect-uri", "not a uri"],
        ["--name", "Web", "--redirect-uri", "javascript:alert(1)"],
        ["--name", "Web", "--redirect-uri", "https://ok.example/cb#fragment"],
        ["--name", "Svc", "--grant", "client_credentials", "--public"],
        ["--name", "x" * 300, "--grant", "client_credentials"],
        ["--name", "Svc", "--grant", "password"],
        ["--name", "Svc", "--algorithm", "HS256"],
        ["--name", "Svc", "--grant", "client_credentials", "--scope", "not-offered"],
        ["--name", "Svc", "--grant", "client_credentials", "--resource", "not-a-uri"],
        [
            "--name",
            "Svc",
            "--grant",
            "client_credentials",
            "--audience",
            "https://a.example",
            "--resource",
            "https://b.example",
        ],
        ["--grant", "client_credentials"],  # --name is required
    ],
)
def test_create_client_with_bad_input_is_a_command_error(db, args):
    """Bad input is a one-line CommandError (exit status 1, no traceback); nothing is created."""
    with pytest.raises(CommandError) as failure:
        create_client(*args)
    assert "Traceback" not in str(failure.value)
    assert not Client.objects.exists()


# --- manage.py bootstrap --------------------------------------------------------------------------


def bootstrap(*args):
    out = io.StringIO()
    call_command("bootstrap", *args, stdout=out)
    return out.getvalue()


def test_bootstrap_creates_an_admin_and_prints_the_password_once(db):
    """First run: an admin who can sign in with the printed password; the second run prints none."""
    first = bootstrap("--admin-email", "Root@Example.com")
    password = re.search(r"password:\s+(\S+)", first).group(1)
    admin = User.objects.get(email="root@example.com")
    assert admin.is_staff and admin.is_superuser
    assert password not in admin.password
    http = HttpClient()
    response = http.post("/accounts/login", {"email": "root@example.com", "password": password})
    assert response["Location"] == "/accounts/mfa/enroll"  # first sign-in: a second factor first
    assert second_step(http, admin, response).status_code == HTTPStatus.FOUND
    assert http.get(CHANGELIST).status_code == HTTPStatus.OK
    second = bootstrap("--admin-email", "root@example.com")
    assert "password" not in second.replace("UAA_KEK", "")
    assert "already present" in second
    assert User.objects.filter(is_superuser=True).count() == 1


def test_bootstrap_leaves_one_active_rs256_key(db):
    """The first run creates the signing keys; running it again creates none."""
    bootstrap("--no-admin")
    kids = set(SigningKey.objects.values_list("kid", flat=True))
    assert SigningKey.objects.active().for_algorithm("RS256").count() == 1
    bootstrap("--no-admin")
    assert set(SigningKey.objects.values_list("kid", flat=True)) == kids


@pytest.mark.parametrize("email", ["not-an-address", ""])
def test_bootstrap_refuses_a_malformed_admin_email(db, email):
    """A CommandError, not an admin nobody can sign in as."""
    with pytest.raises(CommandError):
        bootstrap("--admin-email", email)
    assert not User.objects.exists()


def test_bootstrap_with_an_email_already_taken_by_a_non_admin_is_a_command_error(db):
    """A CommandError naming the problem, not an IntegrityError traceback; the user is not promoted."""
    UserFactory(email="admin@example.com")
    with pytest.raises(CommandError, match=re.escape("admin@example.com")):
        bootstrap()
    assert not User.objects.get(email="admin@example.com").is_superuser


def test_bootstrap_password_is_strong(db):
    """ASVS V2.1: the generated password is long and random (two runs on fresh databases differ)."""
    password = re.search(r"password:\s+(\S+)", bootstrap()).group(1)
    assert len(password) >= 20
    assert password != PASSWORD
