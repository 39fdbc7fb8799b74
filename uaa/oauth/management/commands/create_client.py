"""Create an OAuth client from the shell; prints its id and (for confidential clients) its secret once."""

from __future__ import annotations

import json
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
        parser.add_argument("--algorithm", choices=["RS256", "ES256", "EdDSA"], default="RS256")
        parser.add_argument("--audience", action="append", default=[], help="default aud of access tokens")
        parser.add_argument(
            "--serves",
            action="append",
            default=[],
            metavar="URI",
            dest="serves",
            help="a resource (aud) this client serves as a resource server: it may introspect other "
            "clients' access tokens for it (RFC 7662 §4); repeatable",
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            issued = register_client(
                name=options["name"],
                client_type=Client.CLIENT_PUBLIC if options["public"] else Client.CLIENT_CONFIDENTIAL,
                grant_type=GRANTS[options["grant"]],
                redirect_uris=options["redirect_uris"],
                post_logout_redirect_uris=options["post_logout_uris"],
                trusted=options["trusted"],
                algorithm=options["algorithm"],
                default_audience=options["audience"],
                introspection_resources=options["serves"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps({"client_id": issued.client.client_id, "client_secret": issued.client_secret})
            )
            return
        self.stdout.write(f"client_id:     {issued.client.client_id}")
        if issued.client_secret:
            self.stdout.write(f"client_secret: {issued.client_secret}")
            self.stdout.write("The secret is shown only now; it is stored hashed.")
