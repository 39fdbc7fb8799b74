"""OIDC Core §5.1, §5.1.1 and §5.4: the profile, email, address and phone scopes release their claims.

The user holds every standard claim (accounts.models.User), each validated as §5.1 describes it, and
editable in the user admin; uaa/oauth/claims.py releases what the granted scopes stand for.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI, sign_in
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code
from tests.staff import staff_browser
from tests.uaa.endpoints import userinfo, verified
from uaa.oauth import claims

PROFILE = {
    "middle_name": "Augusta",
    "nickname": "Ada",
    "preferred_username": "ada",
    "profile": "https://example.com/ada",
    "picture": "https://example.com/ada.png",
    "website": "https://ada.example.com",
    "gender": "female",
    "birthdate": "1815-12-10",
    "zoneinfo": "Europe/London",
    "locale": "en-GB",
}
ADDRESS = {
    "street_address": "12 St James's Square",
    "locality": "London",
    "region": "Westminster",
    "postal_code": "SW1Y 4JH",
    "country": "United Kingdom",
}
PHONE = {"phone_number": "+442079460000", "phone_number_verified": True}


@pytest.fixture
def user(db):
    return UserFactory(**PROFILE, **ADDRESS, **PHONE)


def _userinfo(code_flow, client, scope):
    tokens = code_flow(client, scope=scope)["tokens"]
    return userinfo(tokens["access_token"]).json(), verified(tokens["id_token"])[1]


def test_profile_scope_releases_every_profile_claim_the_user_has(code_flow, confidential_client, user):
    """OIDC Core §5.4: profile requests access to name, family_name, given_name, middle_name, nickname,
    preferred_username, profile, picture, website, gender, birthdate, zoneinfo, locale, and updated_at.
    Before issue 11 only name, given_name, family_name and updated_at were released."""
    body, id_token = _userinfo(code_flow, confidential_client, "openid profile")
    assert set(body) == {"sub", *claims.PROFILE_CLAIMS}
    for name, value in PROFILE.items():
        assert body[name] == value, name
    assert body["name"] == "Ada Lovelace"
    assert {"sub", *claims.PROFILE_CLAIMS} <= set(id_token)


def test_updated_at_is_a_number_of_seconds(code_flow, confidential_client, user):
    """OIDC Core §5.1: updated_at is a JSON number, the seconds from 1970-01-01T00:00:00Z."""
    body, id_token = _userinfo(code_flow, confidential_client, "openid profile")
    assert isinstance(body["updated_at"], int) and not isinstance(body["updated_at"], bool)
    user.refresh_from_db()
    assert body["updated_at"] == int(user.updated_at.timestamp())
    assert id_token["updated_at"] == body["updated_at"]


def test_address_scope_releases_the_structured_address(code_flow, confidential_client, user):
    """OIDC Core §5.1.1: address is a JSON object with formatted, street_address, locality, region,
    postal_code and country; §5.4: the address scope requests it."""
    body, _ = _userinfo(code_flow, confidential_client, "openid address")
    assert set(body) == {"sub", "address"}
    assert body["address"] == {
        **ADDRESS,
        "formatted": "12 St James's Square\nSW1Y 4JH London\nWestminster\nUnited Kingdom",
    }


def test_phone_scope_releases_phone_number_and_phone_number_verified(code_flow, confidential_client, user):
    """OIDC Core §5.4: phone requests phone_number and phone_number_verified (a JSON boolean)."""
    body, _ = _userinfo(code_flow, confidential_client, "openid phone")
    assert body == {"sub": str(user.pk), "phone_number": "+442079460000", "phone_number_verified": True}


def test_without_the_scopes_no_profile_address_or_phone_claim_is_released(
    code_flow, confidential_client, user
):
    """OIDC Core §5.4: the claims of a scope the user did not grant are not returned."""
    body, id_token = _userinfo(code_flow, confidential_client, "openid email")
    assert set(body) == {"sub", "email", "email_verified"}
    assert not set(claims.CLAIM_SCOPE) - {"email", "email_verified"} & set(id_token)


def test_claims_the_user_has_no_value_for_are_left_out(code_flow, confidential_client, db):
    """OIDC Core §5.3.2: if a claim is not returned, it SHOULD be omitted, not sent as null or empty."""
    bare = UserFactory(given_name="", family_name="")
    http = HttpClient()
    assert sign_in(http, bare).status_code == HTTPStatus.FOUND
    request = AuthorizationRequest(
        client_id=confidential_client.client_id,
        redirect_uri=REDIRECT_URI,
        scope="openid profile address phone",
    )
    code = authorize(http, request)["code"]
    tokens = exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic).json()
    assert set(userinfo(tokens["access_token"]).json()) == {"sub", "updated_at"}


def test_discovery_lists_the_scopes_and_claims(client, db):
    """OpenID Connect Discovery 1.0 §3: scopes_supported and claims_supported, claims_parameter_supported."""
    document = client.get("/.well-known/openid-configuration").json()
    assert {"openid", "profile", "email", "address", "phone"} <= set(document["scopes_supported"])
    assert set(claims.USER_CLAIMS) <= set(document["claims_supported"])
    assert document["claims_parameter_supported"] is True


# --- the stored values are what §5.1 says they are ----------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("profile", "http://example.com/ada"),
        ("picture", "javascript:alert(1)"),
        ("website", "ftp://example.com"),
        ("zoneinfo", "Mars/Olympus_Mons"),
        ("zoneinfo", "../../etc/passwd"),
        ("locale", "english please"),
        ("locale", "e"),
        ("birthdate", "10/12/1815"),
        ("birthdate", "1815-13-10"),
        ("birthdate", "1815-02-30"),
        ("birthdate", "0000"),
        ("phone_number", "020 7946 0000"),
        ("phone_number", "+0123456789"),
    ],
)
def test_malformed_profile_values_are_refused(db, field, value):
    """OIDC Core §5.1: URLs (here https only), zoneinfo from the IANA database, locale a BCP 47 tag,
    birthdate YYYY-MM-DD or YYYY, phone_number E.164."""
    user = UserFactory()
    setattr(user, field, value)
    with pytest.raises(ValidationError) as refused:
        user.full_clean()
    assert field in refused.value.message_dict


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("birthdate", "1815"),
        ("birthdate", "0000-12-10"),
        ("birthdate", "2000-02-29"),
        ("zoneinfo", "America/Los_Angeles"),
        ("locale", "zh-Hant-TW"),
        ("phone_number", "+14255551212;ext=5678"),
        ("website", "https://example.com/~ada?x=1"),
    ],
)
def test_well_formed_profile_values_are_kept(db, field, value):
    user = UserFactory()
    setattr(user, field, value)
    user.full_clean()


def test_the_user_admin_edits_the_new_claims(db):
    """The profile, phone and address fields are on the user change form and saved from it."""
    target = UserFactory()
    editor, _ = staff_browser("accounts.view_user", "accounts.change_user")
    page = editor.get(f"/admin/accounts/user/{target.pk}/change/").content.decode()
    for field in (*PROFILE, *ADDRESS, "phone_number", "phone_number_verified"):
        assert f'name="{field}"' in page, field
    form = {
        "email": target.email,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "is_active": "on",
        **PROFILE,
        **ADDRESS,
        "phone_number": "+442079460000",
        "_save": "Save",
    }
    response = editor.post(f"/admin/accounts/user/{target.pk}/change/", form)
    assert response.status_code == HTTPStatus.FOUND, response.content[-2000:]
    target.refresh_from_db()
    assert target.zoneinfo == "Europe/London"
    assert target.street_address == ADDRESS["street_address"]
    refused = editor.post(
        f"/admin/accounts/user/{target.pk}/change/", {**form, "website": "http://x.example"}
    )
    assert refused.status_code == HTTPStatus.OK  # the form again, with the error
    target.refresh_from_db()
    assert target.website == PROFILE["website"]


def test_new_claims_are_escaped_on_pages_that_show_them(db):
    """No markup from a profile value reaches a page as markup (the admin change form shows them)."""
    target = UserFactory(nickname='<script>alert("x")</script>', gender="<b>x</b>")
    editor, _ = staff_browser("accounts.view_user", "accounts.change_user")
    page = editor.get(f"/admin/accounts/user/{target.pk}/change/").content.decode()
    assert '<script>alert("x")</script>' not in page
    assert "<b>x</b>" not in page
