"""Seed UAA's bench database and count SQL statements per request (run by bench/run.py, not by hand).

It runs in its own process with the server's environment (production settings, the bench database), so it
writes what the server will read:

  seed --clients FILE --out FILE --users U --pools P --pool-size S
      U users with a confirmed authenticator app; each signs in through the real pages (password, then a
      TOTP code) with Django's test client, and P x S authorization code flows (PKCE, the trusted relying
      party) hand out as many refresh tokens, each the head of its own family, written as P pools of S
      lines; one user access token (openid profile email) for userinfo and one client_credentials access
      token for introspection. Then, for each endpoint, the SQL statements of one warm request.
  rows --clients FILE --count N
      N access-token rows and N sealed ledger records, bulk-inserted with generate_series, then VACUUM
      ANALYZE, so that the planner sees the tables as a long-running deployment's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django_otp.oath import TOTP  # noqa: E402
from django_otp.plugins.otp_totp.models import TOTPDevice  # noqa: E402

from accounts.services import create_user  # noqa: E402
from tests.oauth_client import AuthorizationRequest, authorize, basic_auth, exchange_code, form_post  # noqa: E402

PASSWORD = "bench password, not a secret 0123"
REDIRECT_URI = "https://rp.example.com/callback"


def http() -> HttpClient:
    return HttpClient(SERVER_NAME="127.0.0.1")  # ALLOWED_HOSTS=127.0.0.1, as the server's


def totp_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def signed_in_browser(index: int) -> HttpClient:
    """A user who signs in through the sign-in pages (password, then the authenticator app)."""
    email = f"bench{index}@example.com"
    user = create_user(email=email, password=PASSWORD)
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True, tolerance=1)
    browser = http()
    response = browser.post("/accounts/login", {"email": email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/mfa", response.status_code
    response = browser.post("/accounts/mfa", {"method": "totp", "code": totp_code(device)})
    assert response.status_code == 302 and response["Location"] != "/accounts/mfa", response.status_code
    return browser


def code_flow(browser: HttpClient, rp: dict[str, str]) -> dict[str, Any]:
    request = AuthorizationRequest(client_id=rp["client_id"], redirect_uri=REDIRECT_URI)
    params = authorize(browser, request, consent=False)
    auth = basic_auth(rp["client_id"], rp["client_secret"])
    response = exchange_code(http(), code=params["code"], request=request, auth=auth)
    assert response.status_code == 200, response.content[:300]
    tokens: dict[str, Any] = response.json()
    assert "refresh_token" in tokens, sorted(tokens)
    return tokens


def count_statements(send: Any) -> int:
    send()  # warm: per-process caches and the connection, as in the server's steady state
    with CaptureQueriesContext(connection) as queries:
        response = send()
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return len(queries.captured_queries)


def statements(clients: dict[str, dict[str, str]], browser: HttpClient, user_token: str) -> dict[str, int]:
    cc, rs, rp = clients["cc"], clients["rs"], clients["rp"]
    cc_auth = basic_auth(cc["client_id"], cc["client_secret"])
    cc_token = form_post(http(), "/oauth/token", {"grant_type": "client_credentials"}, auth=cc_auth).json()
    chain = [code_flow(browser, rp)["refresh_token"]]
    rp_auth = basic_auth(rp["client_id"], rp["client_secret"])

    def refresh() -> Any:
        body = {"grant_type": "refresh_token", "refresh_token": chain[-1]}
        response = form_post(http(), "/oauth/token", body, auth=rp_auth)
        if response.status_code == 200:
            chain.append(response.json()["refresh_token"])
        return response

    introspect = {"token": cc_token["access_token"], "token_type_hint": "access_token"}
    rs_auth = basic_auth(rs["client_id"], rs["client_secret"])
    return {
        "token": count_statements(
            lambda: form_post(http(), "/oauth/token", {"grant_type": "client_credentials"}, auth=cc_auth)
        ),
        "refresh": count_statements(refresh),
        "introspect": count_statements(
            lambda: form_post(http(), "/oauth/introspect", introspect, auth=rs_auth)
        ),
        "userinfo": count_statements(
            lambda: http().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {user_token}")
        ),
        "jwks": count_statements(lambda: http().get("/.well-known/jwks.json")),
        "discovery": count_statements(lambda: http().get("/.well-known/openid-configuration")),
    }


def seed(args: argparse.Namespace) -> None:
    clients = json.loads(Path(args.clients).read_text())
    browsers = [signed_in_browser(index) for index in range(args.users)]
    pools: list[list[str]] = []
    user_token = ""
    for pool in range(args.pools):
        tokens = []
        for index in range(args.pool_size):
            issued = code_flow(browsers[(pool * args.pool_size + index) % len(browsers)], clients["rp"])
            tokens.append(issued["refresh_token"])
            user_token = issued["access_token"]
        pools.append(tokens)
    cc = clients["cc"]
    cc_auth = basic_auth(cc["client_id"], cc["client_secret"])
    response = form_post(http(), "/oauth/token", {"grant_type": "client_credentials"}, auth=cc_auth)
    assert response.status_code == 200, response.content[:300]
    seeded = {
        "refresh_pools": pools,
        "userinfo_token": user_token,
        "introspect_token": response.json()["access_token"],
        "statements": statements(clients, browsers[0], user_token),
    }
    out = Path(args.out)
    out.write_text(json.dumps(seeded))
    out.chmod(0o600)


ACCESS_TOKEN_ROWS = """
INSERT INTO oauth2_provider_accesstoken
    (token, token_checksum, expires, scope, application_id, created, updated, resource)
SELECT 'eyJ' || repeat(md5(g::text), 25), encode(sha256(('bench-row-' || g)::bytea), 'hex'),
       now() + ((g %% 1200) - 600) * interval '1 second', 'read', %(application)s,
       now() - interval '1 day', now() - interval '1 day', '[]'::jsonb
FROM generate_series(1, %(count)s) AS g
"""
# Sealed records (leaf_index set, far above any index the sealer will hand out), as in a deployment
# whose beat seals every few minutes; the few the run itself appends stay unsealed.
LEDGER_ROWS = """
INSERT INTO tokens_ledgerrecord (event, at, client_id, actor, body, leaf_index, leaf_hash)
SELECT 'token.issued', now() - interval '1 day' + g * interval '1 millisecond', %(client_id)s, '',
       '{"at":"2030-01-01T00:00:00.000000Z","client_id":"' || %(client_id)s || '","event":"token.issued",'
       || '"grant_type":"client_credentials","jti":"' || md5(g::text) || '","v":1}',
       1000000000000 + g, encode(sha256(('bench-leaf-' || g)::bytea), 'hex')
FROM generate_series(1, %(count)s) AS g
"""


def rows(args: argparse.Namespace) -> None:
    from uaa.oauth.models import Client

    cc = json.loads(Path(args.clients).read_text())["cc"]
    application = Client.objects.get(client_id=cc["client_id"]).pk
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(ACCESS_TOKEN_ROWS, {"application": application, "count": args.count})
        cursor.execute(LEDGER_ROWS, {"client_id": cc["client_id"], "count": args.count})
        cursor.execute("VACUUM ANALYZE oauth2_provider_accesstoken")
        cursor.execute("VACUUM ANALYZE tokens_ledgerrecord")
    print(
        f"inserted {args.count} access-token rows and {args.count} ledger records in "
        f"{time.perf_counter() - started:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    seeding = commands.add_parser("seed")
    seeding.add_argument("--clients", required=True)
    seeding.add_argument("--out", required=True)
    seeding.add_argument("--users", type=int, default=20)
    seeding.add_argument("--pools", type=int, default=4)
    seeding.add_argument("--pool-size", type=int, default=32)
    filling = commands.add_parser("rows")
    filling.add_argument("--clients", required=True)
    filling.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    {"seed": seed, "rows": rows}[args.command](args)


if __name__ == "__main__":
    main()
