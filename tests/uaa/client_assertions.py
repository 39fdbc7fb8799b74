"""RFC 7523 client assertions as a private_key_jwt client makes them, and small servers for ``jwks_uri``."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.test import Client as HttpClient
from jwcrypto import jwk, jwt

from tests.oauth_client import form_post
from uaa.oauth.rfc7523 import ASSERTION_TYPE

ISSUER = "http://testserver"  # UAA_ISSUER in the test settings: the aud of every assertion (rfc7523bis)
TOKEN_ENDPOINT = f"{ISSUER}/oauth/token"
KEY_TYPES: dict[str, dict[str, Any]] = {
    "RS256": {"kty": "RSA", "size": 2048},
    "PS256": {"kty": "RSA", "size": 2048},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
}


def new_key(alg: str = "ES256") -> jwk.JWK:
    key = jwk.JWK.generate(**KEY_TYPES[alg])
    key["kid"] = key.thumbprint()  # type: ignore[index]
    return key


def public_set(*keys: jwk.JWK) -> dict[str, Any]:
    return {"keys": [key.export_public(as_dict=True) for key in keys]}


def assertion(client_id: str, key: jwk.JWK, *, alg: str = "ES256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "exp": now + 60,
        "iat": now,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    token = jwt.JWT(
        header={"alg": alg, "kid": key["kid"]}, claims={k: v for k, v in claims.items() if v is not None}
    )
    token.make_signed_token(key)
    return token.serialize()


def assertion_request(signed: str, url: str = "/oauth/token", **extra: Any) -> Any:
    """POST ``signed`` as a request's client authentication (client_credentials at the token endpoint)."""
    headers = {key: extra.pop(key) for key in list(extra) if key.isupper()}
    data = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **extra}
    if url == "/oauth/token":
        data.setdefault("grant_type", "client_credentials")
    return form_post(HttpClient(), url, data, **headers)


class Served:
    """What a test server saw: requests per path and TCP connections accepted."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.connections = 0


@contextmanager
def http_server(
    handle: Callable[[http.server.BaseHTTPRequestHandler, Served], None],
) -> Iterator[tuple[int, Served]]:
    """A threaded HTTP server on 127.0.0.1 (a random free port) whose GET handler is ``handle``."""
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            handle(self, served)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request: Any, client_address: Any) -> bool:
            served.connections += 1
            return True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()


def json_handler(document: dict[str, Any], *, status: int = 200) -> Callable[..., None]:
    body = json.dumps(document).encode()

    def handle(request: http.server.BaseHTTPRequestHandler, served: Served) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


@contextmanager
def tcp_listener() -> Iterator[tuple[int, Served]]:
    """A bare TCP listener on 127.0.0.1 that counts the connections it accepts and closes them."""
    served = Served()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            served.connections += 1
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], served
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
