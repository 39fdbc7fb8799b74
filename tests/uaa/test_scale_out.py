"""Scale-out: two web nodes, one PostgreSQL database and one Redis database, and no state in the web tier
(issue 12 item 6).

Two gunicorn servers (docker-compose.yml's web command, two sync workers each) on two ports, in production
mode (no DEBUG, a 50+ character SECRET_KEY, UAA_KEK), configured alike as nodes behind a load balancer are:
one UAA_ISSUER, one DATABASE_URL (a fresh PostgreSQL database), one CACHE_URL and broker (a Redis database of
their own). Every change is made through node A's HTTP interface, and every check is an HTTP request to node
B right after it, sent several at a time so that each of B's workers answers some of them.

Attackers, and what they must not achieve:
- the holder of a client secret the operator has just rotated (it leaked), of a deleted client's secret or of
  a scope taken away from the client, who keeps sending it to node B, where the client was cached in every
  worker a moment before (uaa/oauth/client_cache.py): B refuses it on the next request;
- the holder of a token signed by a key an operator has just revoked on node A (the key leaked), presenting
  it to node B, whose workers hold the key's proof and private half in memory (tokens/keys.py): B's
  introspection and userinfo refuse it, B's JWKS no longer lists it, and B's next token is signed by the
  key that replaced it;
- a guesser of client secrets who spreads attempts over both nodes (accounts/throttling.py): the address,
  the client from that address and the client from all addresses lock at the same total count as on one
  node (the limits are lowered for the test);
- the thief of a refresh token that its client has already rotated on node A, who presents it at node B:
  reuse detection revokes the family there too (RFC 9700 §4.14.2);
- and the sign-in itself: the password is typed on node A, the second factor on node B, and the session
  signs the user in on both.

A web tier that kept any of this per process (a TTL cache, a signal-invalidated cache, counters in memory,
sessions in a local cache) fails the case that covers it. Tried: with the client cache's generation check
left out (a copy used while it is held), the client case fails (200 where invalid_scope is due); with
``trusted_public_key``'s answer remembered per process, the key case fails (introspection says active).
PostgreSQL only: skipped when DATABASE_URL is not
a PostgreSQL server (the nodes need a database server both can reach, as a deployment has). Run it with
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/uaa_scaleout .venv/bin/python -m pytest
tests/uaa/test_scale_out.py`` (docs/deployment.md, Scaling out).
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from django_otp.oath import totp

from bench.run import Redis
from tests.oauth_client import AuthorizationRequest, basic_auth
from tests.uaa.certification.rp import REDIRECT_URI, Browser, Callback, ErrorPage, forms
from tests.uaa.live import (
    base_env,
    free_port,
    healthy,
    manage,
    postgres_database,
    postgres_server,
    start,
    stop,
    wait_for,
    web_script,
)

pytestmark = pytest.mark.skipif(
    postgres_server() is None,
    reason="two web nodes need one database server both reach: DATABASE_URL=postgres://... (CI runs it)",
)

CLIENT_FAILURES = 5  # UAA_THROTTLE_CLIENT_FAILURES for the nodes: per client from one address, and overall
IP_FAILURES = 8  # UAA_THROTTLE_CLIENT_IP_FAILURES: per address, whatever client it names
AT_ONCE = 4  # requests sent together to one node: with its two sync workers busy, both answer some
EXTRA_SCOPE = "billing.read"
ADMIN_SCOPES = "uaa.clients.read uaa.clients.write uaa.keys.read uaa.keys.write"
PASSWORD = "scale-out test password, not a secret 0123"
TIMEOUT = 20

SEED = """
import json
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice
from accounts.services import create_user
from uaa.oauth.models import Client
from uaa.oauth.services import register_client
call_command("bootstrap", "--no-admin")  # signing keys (an active key and a standby per algorithm)
admin = register_client(name="scale-out automation", client_type=Client.CLIENT_CONFIDENTIAL,
    grant_type=Client.GRANT_CLIENT_CREDENTIALS, allowed_scopes={admin_scopes!r})
rp = register_client(name="scale-out relying party", client_type=Client.CLIENT_CONFIDENTIAL,
    grant_type=Client.GRANT_AUTHORIZATION_CODE, redirect_uris=[{redirect_uri!r}], trusted=True)
user = create_user(email={email!r}, password={password!r})
TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True, key={totp_key!r})
print(json.dumps({{
    "admin": {{"client_id": admin.client.client_id, "client_secret": admin.client_secret}},
    "rp": {{"client_id": rp.client.client_id, "client_secret": rp.client_secret}},
}}))
"""


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def published_kids(answer: requests.Response) -> set[str]:
    assert answer.status_code == HTTPStatus.OK, answer.text[:300]
    return {key["kid"] for key in answer.json()["keys"]}


def at_once(send: Callable[[], requests.Response], count: int = AT_ONCE) -> list[requests.Response]:
    """``count`` requests sent together: a node's two sync workers each take some (one worker answers one
    request at a time), so a stale copy in either worker would show in the answers."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: send(), range(count)))


@dataclass(frozen=True)
class Node:
    name: str
    base: str

    def token(
        self, client: dict[str, str], *, address: str | None = None, secret: str | None = None, **form: str
    ) -> requests.Response:
        """A client_credentials token request with Basic authentication, from ``address`` (the client's
        address, as the load balancer in front of the node forwards it) when given."""
        return self.post(
            "/oauth/token",
            {"grant_type": "client_credentials", **form},
            client=client,
            address=address,
            secret=secret,
        )

    def post(
        self,
        path: str,
        data: dict[str, str],
        *,
        client: dict[str, str],
        address: str | None = None,
        secret: str | None = None,
    ) -> requests.Response:
        headers = {"Authorization": basic_auth(client["client_id"], secret or client["client_secret"])}
        if address:
            headers["X-Forwarded-For"] = address  # believed from 127.0.0.1: UAA_TRUSTED_PROXIES
        return requests.post(self.base + path, data=data, headers=headers, timeout=TIMEOUT)

    def introspect(self, token: str, *, client: dict[str, str]) -> dict[str, Any]:
        answer = self.post("/oauth/introspect", {"token": token}, client=client)
        assert answer.status_code == HTTPStatus.OK, answer.text[:300]
        return dict(answer.json())

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, timeout=TIMEOUT)

    def userinfo(self, access_token: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {access_token}"}
        return requests.get(f"{self.base}/oauth/userinfo", headers=headers, timeout=TIMEOUT)

    def api(
        self, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> requests.Response:
        """The admin REST API (docs/api.md)."""
        headers = {"Authorization": f"Bearer {token}"}
        return requests.request(
            method, f"{self.base}/api/v1{path}", json=body, headers=headers, timeout=TIMEOUT
        )


@dataclass
class Stack:
    a: Node
    b: Node
    admin: dict[str, str]  # a client_credentials client with the admin scopes
    rp: dict[str, str]  # a trusted authorization-code client
    email: str
    totp_key: str  # hex, the user's authenticator app

    def admin_token(self, node: Node) -> str:
        """A fresh admin token (a revoked signing key takes the previous one with it)."""
        answer = node.token(self.admin, scope=ADMIN_SCOPES)
        assert answer.status_code == HTTPStatus.OK, answer.text[:300]
        return str(answer.json()["access_token"])

    def register_service(self, node: Node, **fields: Any) -> dict[str, str]:
        """A client_credentials client registered through ``node``'s admin API."""
        body = {
            "name": "scale-out service",
            "client_type": "confidential",
            "grant_type": "client_credentials",
        }
        answer = node.api("POST", "/clients", self.admin_token(node), {**body, **fields})
        assert answer.status_code == HTTPStatus.CREATED, answer.text[:500]
        return {"client_id": answer.json()["client_id"], "client_secret": answer.json()["client_secret"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = postgres_server()
    assert server is not None  # pytestmark skips otherwise
    tmp = tmp_path_factory.mktemp("scale_out")
    redis = Redis()  # a Redis database of its own (the first empty one of 8..15), flushed at the end
    shared = redis.claim()
    if shared is None:
        pytest.fail("the scale-out test needs Redis on 127.0.0.1:6379 with an empty database among 8..15")
    started: list[subprocess.Popen[bytes]] = []
    try:
        with postgres_database(server, prefix="uaa_scale_out") as (database, _down, _up):
            ports = {"a": free_port(), "b": free_port()}
            env = {
                **base_env(tmp),
                "DATABASE_URL": database,
                "CACHE_URL": shared,
                "CELERY_BROKER_URL": shared,
                "UAA_ISSUER": f"http://127.0.0.1:{ports['a']}",  # one issuer for both, as behind a balancer
                "ALLOWED_HOSTS": "127.0.0.1",
                "UAA_TRUSTED_PROXIES": "127.0.0.1",  # the test is the balancer: it names the client address
                "UAA_THROTTLE_CLIENT_FAILURES": str(CLIENT_FAILURES),
                "UAA_THROTTLE_CLIENT_IP_FAILURES": str(IP_FAILURES),
                "UAA_EXTRA_SCOPES": f"{EXTRA_SCOPE}=Read the bills",
            }
            # The database made ready once (what the first node's web command would do), so that both
            # nodes start side by side; their own migrate and bootstrap then find nothing to do.
            began = time.monotonic()
            manage(env, "migrate", "--noinput", timeout=300)  # a fresh database: every migration
            email, totp_key = "scale.out@example.com", secrets.token_hex(20)
            script = SEED.format(
                admin_scopes=ADMIN_SCOPES.split(),
                redirect_uri=REDIRECT_URI,
                email=email,
                password=PASSWORD,
                totp_key=totp_key,
            )
            output = manage(env, "shell", "-c", script)
            seeded = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
            ready = time.monotonic()
            try:
                logs = {name: tmp / f"web-{name}.log" for name in ports}
                for name, port in ports.items():
                    started.append(start(web_script(port, workers=2), env, logs[name]))
                nodes = [Node(name, f"http://127.0.0.1:{port}") for name, port in ports.items()]
                for node in nodes:
                    wait_for(healthy(node.base), f"node {node.name} /healthz", logs[node.name], timeout=120)
                up = time.monotonic()
                print(
                    f"database migrated and seeded in {ready - began:.1f} s, nodes up in {up - ready:.1f} s"
                )
                yield Stack(nodes[0], nodes[1], seeded["admin"], seeded["rp"], email, totp_key)
            finally:
                stop(started)  # before the database is dropped
    finally:
        redis.release()


@pytest.fixture(scope="module")
def session(stack: Stack) -> requests.Session:
    """The user's browser, signed in: the password typed on node A, the authenticator code on node B (the
    pending sign-in stage lives in the shared session), the authorization then granted by node B."""
    request = AuthorizationRequest(client_id=stack.rp["client_id"], redirect_uri=REDIRECT_URI)
    browser = Browser(stack.a.base, user={"email": stack.email, "password": PASSWORD})
    page = browser.open(stack.a.base + request.url())
    assert isinstance(page, ErrorPage) and page.pages == ["login"], page
    challenge = next((form for form in forms(page.html) if form.attrs.get("id") == "totp-form"), None)
    assert page.status == HTTPStatus.OK and challenge is not None, page.html[:500]
    code = f"{totp(bytes.fromhex(stack.totp_key)):06d}"
    answer = browser.session.post(
        urljoin(stack.b.base, challenge.attrs["action"]),
        data={**challenge.fields(), "code": code},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == HTTPStatus.FOUND, answer.text[:500]
    location = answer.headers["Location"]
    assert "/accounts/" not in location, location  # not sent back to sign in: B knew the password stage
    on_b = Browser(stack.b.base)
    on_b.session = browser.session
    callback = on_b.open(urljoin(stack.b.base, location))
    assert isinstance(callback, Callback) and "code" in callback.params, callback
    return browser.session


def user_tokens(
    stack: Stack, session: requests.Session, *, authorize: Node, exchange: Node
) -> dict[str, Any]:
    """An authorization code from ``authorize`` for the signed-in ``session`` (no sign-in page on the way),
    redeemed at ``exchange``: access, refresh and ID token."""
    request = AuthorizationRequest(client_id=stack.rp["client_id"], redirect_uri=REDIRECT_URI)
    browser = Browser(authorize.base)
    browser.session = session
    callback = browser.open(authorize.base + request.url())
    assert isinstance(callback, Callback) and callback.pages == [], callback
    form = {
        "grant_type": "authorization_code",
        "code": callback.params["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": request.verifier,
    }
    answer = exchange.post("/oauth/token", form, client=stack.rp)
    assert answer.status_code == HTTPStatus.OK, answer.text[:300]
    return dict(answer.json())


def statuses(answers: list[requests.Response]) -> list[tuple[int, str]]:
    return [(answer.status_code, answer.json().get("error", "")) for answer in answers]


# --- clients ---------------------------------------------------------------------------------------------


def test_a_client_changed_through_node_a_is_refused_by_node_b_on_the_next_request(stack):
    """A client registered through node A's API gets tokens from node B at once; its scope taken away, its
    secret rotated, then the client deleted through A: each time, node B's very next answers (every worker,
    each holding the client in its cache) follow the change."""
    a, b = stack.a, stack.b
    client = stack.register_service(a, allowed_scopes=[EXTRA_SCOPE])
    assert statuses(at_once(lambda: b.token(client, scope=EXTRA_SCOPE))) == [(200, "")] * AT_ONCE

    changed = a.api("PATCH", f"/clients/{client['client_id']}", stack.admin_token(a), {"allowed_scopes": []})
    assert changed.status_code == HTTPStatus.OK, changed.text[:300]
    refused = at_once(lambda: b.token(client, scope=EXTRA_SCOPE))
    assert statuses(refused) == [(400, "invalid_scope")] * AT_ONCE  # RFC 6749 §5.2
    assert b.token(client).status_code == HTTPStatus.OK

    rotated = a.api("POST", f"/clients/{client['client_id']}/rotate-secret", stack.admin_token(a))
    assert rotated.status_code == HTTPStatus.OK, rotated.text[:300]
    new = {**client, "client_secret": rotated.json()["client_secret"]}
    old = at_once(lambda: b.token(client, address="203.0.113.1"))
    assert statuses(old) == [(401, "invalid_client")] * AT_ONCE
    assert statuses(at_once(lambda: b.token(new, address="203.0.113.2"))) == [(200, "")] * AT_ONCE

    deleted = a.api("DELETE", f"/clients/{client['client_id']}", stack.admin_token(a))
    assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted.text[:300]
    gone = at_once(lambda: b.token(new, address="203.0.113.3"))
    assert statuses(gone) == [(401, "invalid_client")] * AT_ONCE


# --- signing keys ----------------------------------------------------------------------------------------


def test_a_key_revoked_through_node_a_stops_verifying_at_node_b_and_b_signs_with_its_successor(
    stack, session
):
    """docs/api.md, emergency revocation: node B's workers have just signed with the key and verified its
    tokens (its proof and private half are in their memory). Revoked through node A's API, B's next answers
    call its tokens inactive (RFC 7662 §2.2) and refuse them at userinfo (RFC 6750 §3.1), B's JWKS drops it,
    and B's next tokens are signed by the key the revocation made active."""
    a, b = stack.a, stack.b
    service = stack.register_service(a)
    issued = [answer.json()["access_token"] for answer in at_once(lambda: b.token(service))]
    user = user_tokens(stack, session, authorize=b, exchange=b)
    kid = kid_of(issued[0])
    assert {kid_of(token) for token in issued} == {kid_of(user["access_token"])} == {kid}
    assert [b.introspect(token, client=service)["active"] for token in issued] == [True] * AT_ONCE
    assert [r.status_code for r in at_once(lambda: b.userinfo(user["access_token"]))] == [200] * AT_ONCE
    assert all(kid in published_kids(answer) for answer in at_once(lambda: b.get("/.well-known/jwks.json")))

    revoked = a.api("POST", f"/keys/{kid}/revoke", stack.admin_token(a), {"reason": "scale-out test"})
    assert revoked.status_code == HTTPStatus.OK, revoked.text[:300]
    successor = revoked.json()["active"]["kid"]
    assert successor != kid

    for token in issued:
        answers = at_once(lambda token=token: b.post("/oauth/introspect", {"token": token}, client=service))
        assert [answer.json() for answer in answers] == [{"active": False}] * AT_ONCE
    refused = at_once(lambda: b.userinfo(user["access_token"]))
    assert [answer.status_code for answer in refused] == [401] * AT_ONCE
    assert all('error="invalid_token"' in answer.headers["WWW-Authenticate"] for answer in refused)
    assert not any(
        kid in published_kids(answer) for answer in at_once(lambda: b.get("/.well-known/jwks.json"))
    )

    fresh = [answer.json()["access_token"] for answer in at_once(lambda: b.token(service))]
    assert {kid_of(token) for token in fresh} == {successor}
    assert all(a.introspect(token, client=service)["active"] for token in fresh)


# --- client-authentication throttling --------------------------------------------------------------------


def _alternating(stack: Stack) -> Iterator[Node]:
    while True:
        yield stack.a
        yield stack.b


def test_failures_from_one_address_split_between_the_nodes_lock_it_at_the_one_node_count(stack):
    """accounts/throttling.py: UAA_THROTTLE_CLIENT_IP_FAILURES failures from one address, whatever client
    they name, lock the address. Half of them sent to each node still lock it at that total: the
    limit-th failure is answered (401), every attempt after it is 429 on both nodes, even with a right
    secret; another address is not touched."""
    guesser, nodes = "203.0.113.10", _alternating(stack)
    service = stack.register_service(stack.a)
    for attempt in range(IP_FAILURES):
        invented = {"client_id": f"guess-{attempt}", "client_secret": "guess"}
        answer = next(nodes).token(invented, address=guesser)
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client"), attempt
        if attempt == IP_FAILURES - 2:  # one short of the limit: a right secret is still served
            assert stack.b.token(service, address=guesser).status_code == HTTPStatus.OK
    for node in (stack.a, stack.b):
        locked = node.token(service, address=guesser)
        assert (locked.status_code, locked.json()["error"]) == (429, "invalid_client"), node.name
        assert int(locked.headers["Retry-After"]) > 0
    assert stack.b.token(service, address="203.0.113.11").status_code == HTTPStatus.OK


def test_guesses_at_one_client_from_many_addresses_and_both_nodes_lock_it_at_the_one_node_count(stack):
    """UAA_THROTTLE_CLIENT_FAILURES failures against one client from all addresses together start the
    client-wide lock: one guess from each of five addresses, alternating between the nodes. Until then a
    new address is served; after, a new address is 429 on both nodes (a right secret too, since it could
    be a guess), while the address the client works from is still served."""
    nodes = _alternating(stack)
    service = stack.register_service(stack.a)
    home = "198.51.100.1"
    assert stack.a.token(service, address=home).status_code == HTTPStatus.OK  # an address the client uses
    for attempt in range(CLIENT_FAILURES):
        if attempt == CLIENT_FAILURES - 1:  # one short of the limit: a new address is still served
            assert stack.b.token(service, address="198.51.100.99").status_code == HTTPStatus.OK
        answer = next(nodes).token(service, address=f"198.51.100.{10 + attempt}", secret="guess")
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client"), attempt
    for node in (stack.a, stack.b):
        locked = node.token(service, address="198.51.100.200")
        assert (locked.status_code, locked.json()["error"]) == (429, "invalid_client"), node.name
        assert node.token(service, address=home).status_code == HTTPStatus.OK, node.name


def test_guesses_at_one_client_from_one_address_split_between_the_nodes_lock_that_pair(stack):
    """UAA_THROTTLE_CLIENT_FAILURES failures against one client from one address lock that pair, even where
    the client has worked from before: the limit-th failure is answered (401), then 429 on both nodes."""
    nodes = _alternating(stack)
    service = stack.register_service(stack.a)
    address = "198.51.100.50"
    assert stack.b.token(service, address=address).status_code == HTTPStatus.OK  # a known address
    for attempt in range(CLIENT_FAILURES):
        answer = next(nodes).token(service, address=address, secret="guess")
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client"), attempt
    for node in (stack.a, stack.b):
        locked = node.token(service, address=address)
        assert (locked.status_code, locked.json()["error"]) == (429, "invalid_client"), node.name


# --- refresh tokens and the session ----------------------------------------------------------------------


def test_a_refresh_token_rotated_on_node_a_is_reuse_at_node_b_and_ends_the_family_everywhere(stack, session):
    """RFC 9700 §4.14.2: the client refreshes on node A; the old refresh token, presented at node B, is
    invalid_grant and revokes the family: the new refresh token fails on A, the new access token on both."""
    a, b = stack.a, stack.b
    first = user_tokens(stack, session, authorize=a, exchange=a)
    refresh = {"grant_type": "refresh_token"}
    rotated = a.post("/oauth/token", {**refresh, "refresh_token": first["refresh_token"]}, client=stack.rp)
    assert rotated.status_code == HTTPStatus.OK, rotated.text[:300]
    newest = rotated.json()
    assert b.userinfo(newest["access_token"]).status_code == HTTPStatus.OK

    reused = b.post("/oauth/token", {**refresh, "refresh_token": first["refresh_token"]}, client=stack.rp)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    again = a.post("/oauth/token", {**refresh, "refresh_token": newest["refresh_token"]}, client=stack.rp)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert [node.userinfo(newest["access_token"]).status_code for node in (a, b)] == [401, 401]
    assert b.introspect(newest["access_token"], client=stack.rp) == {"active": False}


def test_one_sign_in_is_one_session_on_both_nodes(stack, session):
    """The session fixture signed in across the nodes (password on A, second factor on B); that one
    session is single sign-on on either node: codes without a sign-in page, redeemed at the other node."""
    for authorize, exchange in ((stack.a, stack.b), (stack.b, stack.a)):
        tokens = user_tokens(stack, session, authorize=authorize, exchange=exchange)
        assert exchange.userinfo(tokens["access_token"]).status_code == HTTPStatus.OK
