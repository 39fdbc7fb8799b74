"""The client-credentials token signed with the cached key and stored by one statement that confirms it
(tokens.signing.optimistic, uaa/oauth/access_tokens.py store_statement; issue 12 item 2).

Attacker: whoever holds a signing key's private half, which the operator has just revoked, while a web
worker that cached the key before the revocation (another process: its cache was not told) keeps
answering token requests. No token signed by the revoked key may be stored or reach a client; the worker
must answer with the replacement key, not with an error.

PostgreSQL only: the one-statement path is PostgreSQL's (data-modifying WITH); SQLite takes the locked
transaction, which tests/tokens/test_revocation_race.py covers.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from tests.uaa.endpoints import token_request, unverified_claims, verified
from tokens import keys, ledger
from tokens.models import LedgerRecord
from tokens.rotation import revoke_signing_key
from uaa.oauth import access_tokens

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="the one-statement path is PostgreSQL's (DATABASE_URL=postgres://...)",
    ),
]


def _kid(token: str) -> str:
    import base64

    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_holding_a_revoked_key_answers_with_the_replacement(service_client):
    algorithm = settings.UAA_ACCESS_TOKEN_ALG
    first = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    revoked = _kid(first)
    held = keys.cached_signing_key(algorithm)  # what a worker that served the first token holds
    assert held is not None and held.kid == revoked
    revoke_signing_key(kid=revoked, now=timezone.now(), reason="leaked")
    keys._signing[algorithm] = held  # that worker's memory: no one told it of the revocation
    stored_before = get_access_token_model().objects.count()
    issued_before = LedgerRecord.objects.filter(event=LedgerRecord.Event.TOKEN_ISSUED).count()

    response = token_request(service_client, {"grant_type": "client_credentials"})

    assert response.status_code == HTTPStatus.OK, response.content
    token = response.json()["access_token"]
    assert _kid(token) != revoked
    verified(token)  # by the published JWKS, as a resource server would
    assert get_access_token_model().objects.count() == stored_before + 1  # one token, not two
    records = LedgerRecord.objects.filter(event=LedgerRecord.Event.TOKEN_ISSUED)
    assert records.count() == issued_before + 1
    assert json.loads(records.latest("pk").body)["jti"] == unverified_claims(token)["jti"]
    assert keys.cached_signing_key(algorithm).kid == _kid(token)  # the worker now holds the new key


@pytest.mark.django_db(transaction=True)
def test_nothing_is_stored_for_a_kid_that_is_not_active(service_client):
    """The statement itself: a kid revoked (or never active) stores neither the token nor its record."""
    first = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    revoked = _kid(first)
    revoke_signing_key(kid=revoked, now=timezone.now(), reason="leaked")
    model = get_access_token_model()
    token = model(scope="", expires=timezone.now(), application=service_client.client, resource=[])
    token.token, token.token_checksum = "", "0" * 64
    records = LedgerRecord.objects.count()
    record = {"event": LedgerRecord.Event.TOKEN_ISSUED, "client_id": service_client.client_id}
    for kids in ([revoked], ["no-such-kid"], [revoked, keys.active_kid(settings.UAA_ACCESS_TOKEN_ALG)]):
        statement = access_tokens.store_statement(access_token=token, kids=kids)
        assert ledger.append_record(**record, with_event=statement) is None
    assert not model.objects.filter(token_checksum="0" * 64).exists()
    assert LedgerRecord.objects.count() == records
