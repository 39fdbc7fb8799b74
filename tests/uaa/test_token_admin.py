"""django-oauth-toolkit's token lists in Django admin: "revoke" needs the change permission, and is recorded.

Attacker: a staff member signed in with MFA who may only view access or refresh tokens. They must not
revoke anyone's tokens (signing every user out of every application at once); a staff member with the
change permission does, and each revocation is a ``token.revoked`` record naming them (RFC 7009 §2.1:
revoking a refresh token also invalidates the access tokens issued with it).
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from tests.staff import ledger_records, offered_actions, staff_browser
from tokens.models import LedgerRecord

ACCESS = "/admin/oauth2_provider/accesstoken/"
REFRESH = "/admin/oauth2_provider/refreshtoken/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]


@pytest.fixture
def issued(code_flow, confidential_client):
    code_flow(confidential_client)
    refresh = get_refresh_token_model().objects.get()
    return refresh, get_access_token_model().objects.get(pk=refresh.access_token_id)


@pytest.mark.parametrize(("page", "perm"), [(ACCESS, "view_accesstoken"), (REFRESH, "view_refreshtoken")])
def test_view_only_staff_cannot_revoke_tokens(issued, page, perm):
    refresh, access = issued
    viewer, _ = staff_browser(f"oauth2_provider.{perm}")
    listing = viewer.get(page)
    assert listing.status_code == HTTPStatus.OK
    assert "revoke_tokens" not in offered_actions(listing.content)
    target = access if page == ACCESS else refresh
    viewer.post(page, {"action": "revoke_tokens", "_selected_action": [target.pk], "index": 0})
    refresh.refresh_from_db()
    assert refresh.revoked is None
    assert get_access_token_model().objects.filter(pk=access.pk).exists()
    assert not ledger_records(LedgerRecord.Event.TOKEN_REVOKED)


def test_staff_with_change_refreshtoken_revoke_and_the_record_names_them(issued, confidential_client):
    refresh, access = issued
    editor, admin = staff_browser("oauth2_provider.view_refreshtoken", "oauth2_provider.change_refreshtoken")
    editor.post(REFRESH, {"action": "revoke_tokens", "_selected_action": [refresh.pk]})
    refresh.refresh_from_db()
    assert refresh.revoked is not None
    assert not get_access_token_model().objects.filter(pk=access.pk).exists()
    [record] = ledger_records(LedgerRecord.Event.TOKEN_REVOKED)
    assert record["detail"] == {"reason": "admin", "by": str(admin.pk)}
    assert record["hashes"] == {"refresh_token": refresh.token_checksum}
    assert record["client_id"] == confidential_client.client_id and record["sub"] == str(refresh.user_id)


def test_staff_with_change_accesstoken_revoke_and_the_record_names_them(issued):
    _, access = issued
    editor, admin = staff_browser("oauth2_provider.view_accesstoken", "oauth2_provider.change_accesstoken")
    editor.post(ACCESS, {"action": "revoke_tokens", "_selected_action": [access.pk]})
    assert not get_access_token_model().objects.filter(pk=access.pk).exists()
    [record] = ledger_records(LedgerRecord.Event.TOKEN_REVOKED)
    assert record["detail"]["by"] == str(admin.pk)
    assert record["hashes"] == {"access_token": access.token_checksum}
