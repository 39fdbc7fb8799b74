"""One live OP for the certification modules: docker-compose.yml's web command (migrate, bootstrap, gunicorn
with two workers) on a free port, production settings (no DEBUG), its own SQLite file; the conformance
clients made by ``manage.py create_client --no-require-pkce`` as docs/certification.md says, and the
suite's test users made with accounts.services.create_user.

UAA_MFA_REQUIRED=false: the suite's tester signs in by hand (and would type a TOTP code); this relying
party signs in with a password only, so that prompt=login and max_age=1 can sign in twice within one
TOTP period. Everything else is the production configuration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.uaa.certification.rp import REDIRECT_URI, REDIRECT_URI_WITH_QUERY, RP, Browser
from tests.uaa.live import base_env, free_port, healthy, manage, start, stop, wait_for, web_script

PASSWORD = "correct horse battery staple 42"
USERS = {
    # the suite's default login_hint is buffy@<issuer host>; its configuration may name another
    # (server.login_hint)
    "buffy": {"email": "buffy@uaa.example", "given_name": "Buffy", "family_name": "Summers"},
    "faith": {"email": "faith@uaa.example", "given_name": "Faith", "family_name": "Lehane"},
}
PROFILE = {
    "middle_name": "Anne",
    "nickname": "Buff",
    "preferred_username": "buffy",
    "website": "https://buffy.example",
    "profile": "https://buffy.example/profile",
    "picture": "https://buffy.example/buffy.png",
    "gender": "female",
    "birthdate": "1981-01-19",
    "zoneinfo": "America/Los_Angeles",
    "locale": "en-US",
    "phone_number": "+14255551212",
    "phone_number_verified": True,
    "street_address": "1630 Revello Drive",
    "locality": "Sunnydale",
    "region": "CA",
    "postal_code": "95037",
    "country": "US",
    "email_verified": True,
}
MAKE_USERS = """
import json
from accounts.services import create_user
users = json.loads({users!r})
profile = json.loads({profile!r})
for name, fields in users.items():
    user = create_user(email=fields["email"], password={password!r}, given_name=fields["given_name"],
                       family_name=fields["family_name"])
    for key, value in profile.items():
        setattr(user, key, value)
    user.full_clean()
    user.save()
    print(json.dumps({{"name": name, "sub": user.sub}}))
"""


@dataclass
class OP:
    base: str
    config: dict[str, Any]
    jwks: dict[str, Any]
    env: dict[str, str]
    basic: dict[str, str]  # the conformance client: client_secret_basic
    # the second client (oidcc-server-client-secret-post, client2 of oidcc-refresh-token)
    post: dict[str, str]
    # two redirect URIs, one with a query (the Dynamic OP plan's redirect URI modules)
    query: dict[str, str]
    users: dict[str, dict[str, str]]

    def rp(
        self,
        *,
        auth: str = "client_secret_basic",
        client: dict[str, str] | None = None,
        redirect_uri: str = REDIRECT_URI,
    ) -> RP:
        client = client or (self.post if auth == "client_secret_post" else self.basic)
        return RP(
            client["client_id"],
            client["client_secret"],
            self.config,
            self.jwks,
            auth=auth,
            redirect_uri=redirect_uri,
        )

    def browser(self, user: str | None = "buffy", *, consent: bool = True) -> Browser:
        return Browser(self.base, user=self.users[user] if user else None, consent=consent)

    def new_user(self) -> str:
        """Another user with Buffy's claims, who has consented to nothing; its name in ``users``."""
        name = f"buffy{len(self.users)}"
        fields = {**USERS["buffy"], "email": f"{name}@uaa.example"}
        self.users.update(make_users(self.env, {name: fields}))
        return name


def conformance_client(env: dict[str, str], name: str, *redirect_uris: str) -> dict[str, str]:
    """docs/certification.md: a confidential client, require_pkce off, the suite's redirect URI."""
    uris = [argument for uri in redirect_uris or (REDIRECT_URI,) for argument in ("--redirect-uri", uri)]
    return json.loads(
        manage(
            env,
            *("create_client", "--name", name, "--grant", "authorization_code"),
            *uris,
            *("--no-require-pkce", "--json"),
        )
    )


def make_users(env: dict[str, str], users: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``users`` made by accounts.services.create_user with ``PROFILE``, with their password and sub."""
    script = MAKE_USERS.format(users=json.dumps(users), profile=json.dumps(PROFILE), password=PASSWORD)
    output = manage(env, "shell", "-c", script)  # Django prints a line of its own first
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    subs = {row["name"]: row["sub"] for row in rows}
    return {name: {**fields, "password": PASSWORD, "sub": subs[name]} for name, fields in users.items()}


@pytest.fixture(scope="session")
def op(tmp_path_factory) -> Iterator[OP]:
    tmp = tmp_path_factory.mktemp("certification_op")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**base_env(tmp), "UAA_ISSUER": base, "UAA_MFA_REQUIRED": "false"}
    log = tmp / "web.log"
    started = [start(web_script(port), env, log)]
    try:
        wait_for(healthy(base), "gunicorn /healthz", log, timeout=120)
        users = make_users(env, USERS)
        config = requests.get(f"{base}/.well-known/openid-configuration", timeout=20).json()
        jwks = requests.get(config["jwks_uri"], timeout=20).json()
        yield OP(
            base=base,
            config=config,
            jwks=jwks,
            env=env,
            basic=conformance_client(env, "conformance"),
            post=conformance_client(env, "conformance-post"),
            query=conformance_client(env, "conformance-query", REDIRECT_URI_WITH_QUERY, f"{REDIRECT_URI}/2"),
            users=users,
        )
    finally:
        stop(started)


@pytest.fixture(params=["default", "form_post"])
def response_mode(request) -> str:
    """The Basic OP plan (response_mode default) and the Form Post OP plan (``changeResponseTypeToFormPost``:
    the same modules with response_mode=form_post)."""
    return str(request.param)
