"""Create an OAuth client from the shell; prints its id and (for confidential clients) its secret once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from uaa.oauth.models import Client
from uaa.oauth.services import register_client

GRANTS = {
    "authorization_code": Client.GRANT_AUTHORIZATION_CODE,
    "client_credentials": Client.GRANT_CLIENT_CREDENTIALS,
}


class Command(BaseCommand):
    help = "Create an OAuth client and print its client_id and client_secret (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--grant", choices=sorted(GRANTS), default="authorization_code")
        parser.add_argument("--public", action="store_true", help="a public client (no secret; PKCE only)")
        parser.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
        parser.add_argument(
            "--post-logout-redirect-uri", action="append", default=[], dest="post_logout_uris"
        )
        parser.add_argument("--trusted", action="store_true", help="first-party: skip the consent page")
        parser.add_argument(
            "--no-require-pkce",
            action="store_false",
            dest="require_pkce",
            help="a confidential client whose OpenID Connect requests with a nonce may leave PKCE out "
            "(RFC 9700 §2.1.1); every other request still needs it. Refused for a public client",
        )
        parser.add_argument("--algorithm", choices=["RS256", "ES256", "EdDSA"], default="RS256")
        parser.add_argument(
            "--audience",
            action="append",
            default=[],
            help="default aud of access tokens when the request names no resource; repeatable",
        )
        parser.add_argument(
            "--serves",
            action="append",
            default=[],
            metavar="URI",
            dest="serves",
            help="a resource (aud) this client serves as a resource server: it may introspect other "
            "clients' access tokens for it (RFC 7662 §4); repeatable",
        )
        parser.add_argument(
            "--resource",
            action="append",
            default=None,
            metavar="URI",
            dest="resources",
            help="a resource (RFC 8707) this client may get access tokens for, as their aud: a resource "
            "server it calls; repeatable. Default: its --audience values",
        )
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            metavar="SCOPE",
            dest="scopes",
            help="an extra scope (of UAA_EXTRA_SCOPES) this client may be granted; repeatable. The OpenID "
            "Connect user scopes need none",
        )
        keys = parser.add_mutually_exclusive_group()
        keys.add_argument(
            "--jwks-uri", default="", help="authenticate with private_key_jwt, keys at this URL"
        )
        keys.add_argument(
            "--jwks-file",
            default="",
            help="authenticate with private_key_jwt, public keys in this JWK Set file",
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        jwks: dict[str, object] = {}
        if options["jwks_file"]:
            try:
                jwks = json.loads(Path(options["jwks_file"]).read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"--jwks-file: {exc}") from exc
        private_key_jwt = bool(jwks or options["jwks_uri"])
        method = Client.PRIVATE_KEY_JWT if private_key_jwt else Client.CLIENT_SECRET
        try:
            issued = register_client(
                name=options["name"],
                client_type=Client.CLIENT_PUBLIC if options["public"] else Client.CLIENT_CONFIDENTIAL,
                grant_type=GRANTS[options["grant"]],
                redirect_uris=options["redirect_uris"],
                post_logout_redirect_uris=options["post_logout_uris"],
                trusted=options["trusted"],
                require_pkce=options["require_pkce"],
                algorithm=options["algorithm"],
                default_audience=options["audience"],
                introspection_resources=options["serves"],
                allowed_resources=options["resources"],
                allowed_scopes=options["scopes"],
                token_endpoint_auth_method=method,
                jwks=jwks,
                jwks_uri=options["jwks_uri"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        secret = None if private_key_jwt else issued.client_secret  # its secret authenticates nothing
        if options["json"]:
            self.stdout.write(json.dumps({"client_id": issued.client.client_id, "client_secret": secret}))
            return
        self.stdout.write(f"client_id:     {issued.client.client_id}")
        if private_key_jwt:
            self.stdout.write("It authenticates with private_key_jwt (RFC 7523): no secret.")
        elif issued.client_secret:
            self.stdout.write(f"client_secret: {issued.client_secret}")
            self.stdout.write("The secret is shown only now; it is stored hashed.")
