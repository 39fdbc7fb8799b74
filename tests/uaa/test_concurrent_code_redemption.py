"""Two token requests racing with one authorization code: one wins, the other is a replay."""

from __future__ import annotations

import threading
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post
from tokens.models import LedgerRecord


@pytest.mark.django_db(transaction=True)
def test_a_code_redeemed_twice_at_the_same_moment_yields_one_grant_and_revokes_it(
    browser, confidential_client, service_client
):
    """RFC 6749 §4.1.2: a code used more than once is refused and the tokens issued on it are revoked.

    The token request is one transaction that locks the code: the racing request waits, finds the code
    spent, and is handled as a replay. No request commits tokens nobody received.
    """
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    code = authorize(browser, request)["code"]
    barrier = threading.Barrier(2)
    responses: list[Any] = []

    def redeem() -> None:
        try:
            barrier.wait()
            responses.append(
                exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic)
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [HTTPStatus.OK, HTTPStatus.BAD_REQUEST]
    loser = next(r for r in responses if r.status_code == HTTPStatus.BAD_REQUEST)
    assert loser.json()["error"] == "invalid_grant"
    winner = next(r for r in responses if r.status_code == HTTPStatus.OK).json()
    introspected = form_post(
        HttpClient(), "/oauth/introspect", {"token": winner["access_token"]}, auth=service_client.basic
    )
    assert introspected.json() == {"active": False}
    # exactly one grant happened, and the ledger says so: the losing request left no token record
    assert LedgerRecord.objects.filter(event=LedgerRecord.Event.TOKEN_ISSUED).count() == 1
