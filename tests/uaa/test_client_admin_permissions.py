"""Rotating a client's secret in the admin needs ``oauth.change_client``: it changes the client and
reveals a credential.

Attacker: a staff member signed in with MFA who may only view clients; they must not obtain a working
secret for someone else's client (nor break the client's own by rotating it).
"""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest

from tests.staff import offered_actions, staff_browser
from tests.uaa.test_client_admin import client_credentials
from uaa.oauth.models import Client

CHANGELIST = "/admin/oauth/client/"
SECRET = re.compile(rb'<code id="client-secret">([^<]+)</code>')


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]


@pytest.fixture
def billing(client_factory):
    return client_factory(name="Billing", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])


def test_view_only_staff_are_not_offered_and_cannot_forge_a_rotation(billing):
    viewer, _ = staff_browser("oauth.view_client")
    assert "rotate_secret" not in offered_actions(viewer.get(CHANGELIST).content)
    response = viewer.post(
        CHANGELIST, {"action": "rotate_secret", "_selected_action": [billing.client.pk], "index": 0}
    )
    assert SECRET.search(response.content) is None
    assert client_credentials(billing.client_id, billing.secret).status_code == HTTPStatus.OK


def test_staff_with_change_client_rotate_the_secret(billing):
    editor, _ = staff_browser("oauth.view_client", "oauth.change_client")
    response = editor.post(CHANGELIST, {"action": "rotate_secret", "_selected_action": [billing.client.pk]})
    new = SECRET.search(response.content)
    assert new is not None
    assert client_credentials(billing.client_id, new.group(1).decode()).status_code == HTTPStatus.OK
