"""Every grant and security event appends an audit record in its own transaction (docs/audit-ledger.md).

Records hold identifiers and SHA-256 digests, never a token, code, secret or password.
"""

from __future__ import annotations

import hashlib
import json
from http import HTTPStatus
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.utils import timezone

from tests.conftest import REDIRECT_URI, sign_in
from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code
from tests.uaa.endpoints import refresh, revoke, token_request
from tokens import ledger
from tokens.models import LedgerRecord
from tokens.rotation import ensure_active_key, revoke_signing_key
from uaa.oauth import audit


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def records(event: str) -> list[dict[str, Any]]:
    return [
        json.loads(body)
        for body in LedgerRecord.objects.filter(event=event).order_by("id").values_list("body", flat=True)
    ]


def all_bodies() -> str:
    return "\n".join(LedgerRecord.objects.values_list("body", flat=True))


def claims_of(jwt: str) -> dict[str, Any]:
    import base64

    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_client_credentials_issue_records_jti_digest_audience_and_scope(service_client):
    """RFC 6749 §4.4.3: the token response, recorded with the JWT's jti and the token's SHA-256 only."""
    response = token_request(service_client, {"grant_type": "client_credentials"})
    assert response.status_code == HTTPStatus.OK
    access_token = response.json()["access_token"]
    (record,) = records("token.issued")
    assert record["grant_type"] == "client_credentials"
    assert record["client_id"] == service_client.client_id
    assert record["jti"] == claims_of(access_token)["jti"]
    assert record["hashes"] == {"access_token": sha256(access_token)}
    assert record["aud"] == ["https://api.example.com"]
    assert record["ip"] == "127.0.0.1"
    assert "sub" not in record  # no user in a client credentials grant
    assert access_token not in all_bodies() and service_client.secret not in all_bodies()


def test_a_failing_ledger_append_issues_no_token(service_client, monkeypatch):
    """No grant without its record: if the record cannot be written, the token is not stored or sent."""
    from oauth2_provider.models import get_access_token_model

    def broken(**fields: Any) -> None:
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(ledger, "append_record", broken)
    response = token_request(service_client, {"grant_type": "client_credentials"})
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert "access_token" not in response.content.decode()
    assert not get_access_token_model().objects.exists()


def test_a_grant_rolled_back_after_its_record_leaves_no_record(service_client, monkeypatch):
    """No record without its grant: a failure after the append rolls the record back with the token."""
    from oauth2_provider.models import get_access_token_model

    real = audit.token_issued

    def then_fail(**kwargs: Any) -> None:
        real(**kwargs)
        assert LedgerRecord.objects.filter(event="token.issued").exists()
        raise RuntimeError("the grant fails after its record was appended")

    monkeypatch.setattr(audit, "token_issued", then_fail)
    response = token_request(service_client, {"grant_type": "client_credentials"})
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert not get_access_token_model().objects.exists()
    assert not LedgerRecord.objects.filter(event="token.issued").exists()


def test_the_code_flow_records_consent_sign_in_and_the_issued_tokens(confidential_client, user, code_flow):
    """RFC 6749 §4.1: sign-in, the authorization (consent given on the page) and the code exchange."""
    result = code_flow(confidential_client, scope="openid profile offline_access")
    tokens = result["tokens"]
    (signed_in,) = records("sign_in.succeeded")
    assert signed_in["sub"] == str(user.pk) and signed_in["amr"] == ["pwd", "otp", "mfa"]
    (granted,) = records("authorization.granted")
    assert granted["detail"] == {"consent": "given", "redirect_uri": REDIRECT_URI}
    assert granted["sub"] == str(user.pk)
    assert granted["scope"] == ["openid", "profile", "offline_access"]
    assert granted["hashes"] == {"code": sha256(result["params"]["code"])}
    (issued,) = records("token.issued")
    assert issued["grant_type"] == "authorization_code"
    assert issued["sub"] == str(user.pk)
    assert issued["amr"] == ["pwd", "otp", "mfa"]
    assert issued["hashes"] == {
        "access_token": sha256(tokens["access_token"]),
        "refresh_token": sha256(tokens["refresh_token"]),
        "code": sha256(result["params"]["code"]),
    }
    assert issued["detail"]["id_token_jti"] == claims_of(tokens["id_token"])["jti"]
    bodies = all_bodies()
    for secret in (
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        result["params"]["code"],
    ):
        assert secret not in bodies
    assert PASSWORD not in bodies and confidential_client.secret not in bodies


def test_a_trusted_client_records_consent_as_skipped(client_factory, browser):
    trusted = client_factory(name="First party", trusted=True)
    request = AuthorizationRequest(client_id=trusted.client_id, redirect_uri=REDIRECT_URI)
    authorize(browser, request, consent=False)
    (granted,) = records("authorization.granted")
    assert granted["detail"]["consent"] == "skipped"


def test_a_refused_consent_is_recorded(confidential_client, user, browser):
    """RFC 6749 §4.1.2.1 access_denied."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    page = browser.get(request.url())
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    response = browser.post("/oauth/authorize", data)  # no "allow"
    assert "error=access_denied" in response["Location"]
    (denied,) = records("authorization.denied")
    assert denied["client_id"] == confidential_client.client_id and denied["sub"] == str(user.pk)
    assert not records("authorization.granted")


def test_refresh_rotation_and_reuse_detection_are_recorded(confidential_client, code_flow):
    """RFC 9700 §4.14.2: rotation links the new refresh token to the old; a replay revokes the family."""
    first = code_flow(confidential_client, scope="openid offline_access")["tokens"]
    rotated = refresh(confidential_client, first["refresh_token"])
    assert rotated.status_code == HTTPStatus.OK
    issued = records("token.issued")[-1]
    assert issued["grant_type"] == "refresh_token"
    assert issued["hashes"]["previous_refresh_token"] == sha256(first["refresh_token"])
    assert issued["hashes"]["refresh_token"] == sha256(rotated.json()["refresh_token"])
    family = issued["detail"]["refresh_token_family"]

    replay = refresh(confidential_client, first["refresh_token"])
    assert replay.status_code == HTTPStatus.BAD_REQUEST
    (reused,) = records("refresh_token.reused")
    assert reused["hashes"] == {"refresh_token": sha256(first["refresh_token"])}
    assert reused["detail"] == {"refresh_token_family": family, "family_revoked": True}
    assert reused["client_id"] == confidential_client.client_id


def test_a_replayed_code_is_recorded_with_the_revocation(confidential_client, browser):
    """RFC 6749 §4.1.2: a code used twice revokes the tokens issued on its first use."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    code = authorize(browser, request)["code"]
    first = exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic)
    assert first.status_code == HTTPStatus.OK
    second = exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic)
    assert second.status_code == HTTPStatus.BAD_REQUEST
    (replayed,) = records("code.replayed")
    assert replayed["hashes"] == {"code": sha256(code), "access_token": sha256(first.json()["access_token"])}
    assert replayed["detail"]["tokens_revoked"] is True


def test_revocation_is_recorded_and_unknown_tokens_are_not(service_client):
    """RFC 7009 §2.1 (and §2.2: an unknown token is answered 200 but there is nothing to record)."""
    access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    assert revoke(service_client, "not-a-token").status_code == HTTPStatus.OK
    assert not records("token.revoked")
    assert revoke(service_client, access_token).status_code == HTTPStatus.OK
    (revoked,) = records("token.revoked")
    assert revoked["hashes"] == {"access_token": sha256(access_token)}
    assert revoked["jti"] == claims_of(access_token)["jti"]


def test_sign_in_failures_and_sign_out_are_recorded(db, user):
    http = HttpClient(HTTP_USER_AGENT="audit-test/1.0")
    assert http.post("/accounts/login", {"email": user.email, "password": "wrong"}).status_code == 400
    assert http.post("/accounts/login", {"email": "nobody@example.com", "password": "x"}).status_code == 400
    known, unknown = records("sign_in.failed")
    assert known["sub"] == str(user.pk) and known["user_agent"] == "audit-test/1.0"
    assert "sub" not in unknown
    assert "wrong" not in all_bodies() and "nobody@example.com" not in all_bodies()
    sign_in(http, user)
    http.post("/accounts/logout")
    (signed_out,) = records("sign_out")
    assert signed_out["sub"] == str(user.pk)


def test_signing_key_events_are_recorded_with_the_change(db):
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    revoke_signing_key(kid=key.kid, now=timezone.now(), reason="compromised")
    revoked = records("key.revoked")[-1]
    assert revoked["subject"] == key.kid
    assert revoked["detail"] == {"alg": "ES256", "reason": "compromised"}
    activated = records("key.activated")
    assert activated[0]["subject"] == key.kid
    assert activated[-1]["detail"]["reason"] == f"revocation of {key.kid}"


def test_client_registration_and_secret_rotation_are_recorded(db, service_client):
    from uaa.oauth.services import rotate_client_secret

    secret = rotate_client_secret(client=service_client.client)
    (registered,) = records("client.registered")
    assert registered["client_id"] == service_client.client_id
    (rotated,) = records("client.secret_rotated")
    assert rotated["client_id"] == service_client.client_id
    assert secret not in all_bodies()


def test_admin_changes_are_recorded_with_field_names_and_never_values(db, confidential_client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    sign_in(http, staff)
    client = confidential_client.client
    page = http.get(f"/admin/oauth/client/{client.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data.update(
        name="Renamed RP",
        redirect_uris=client.redirect_uris,
        post_logout_redirect_uris=client.post_logout_redirect_uris,
        allowed_origins="",
        trusted="",
    )
    data = {name: value for name, value in data.items() if value is not None}
    response = http.post(f"/admin/oauth/client/{client.pk}/change/", data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:2000]
    (change,) = records("admin.change")
    assert change["sub"] == str(staff.pk)
    assert change["subject"] == f"oauth.client:{client.pk}"
    assert change["detail"] == {
        "action": "change",
        "model": "oauth.client",
        "object_id": str(client.pk),
        "fields": ["Name"],
    }
    assert "Renamed RP" not in all_bodies()


def test_key_admin_actions_are_recorded(db):
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    sign_in(http, staff)
    key = ensure_active_key(algorithm="EdDSA", now=timezone.now())
    http.post("/admin/tokens/signingkey/", {"action": "revoke", "_selected_action": [key.pk]})
    (revoked,) = records("key.revoked")
    assert revoked["subject"] == key.kid
    assert revoked["detail"]["reason"] == "admin"
    assert revoked["sub"] == str(staff.pk)  # the admin, by sub (not by e-mail in a free-text reason)
