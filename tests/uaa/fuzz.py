"""A bounded, reproducible corpus of malformed requests for every endpoint (tests/uaa/test_bad_input.py).

``corpus(seed=SEED, ...)`` always returns the same cases for the same seed and context: targeted families
(odd charsets, hostile ``Authorization`` headers, broken bodies and query strings, wrong methods, JSON and
multipart bodies, junk headers) for each endpoint they apply to, then seeded random combinations of the
same ingredients. Bodies and query strings are bytes, as a WSGI server hands them over (the query string
and header values decoded as ISO-8859-1, PEP 3333).
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field

SEED = 20261202
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    methods: tuple[str, ...]
    json: bool  # answers RFC 6749 §5.2 JSON errors (else HTML pages or public JSON documents)
    query: bytes = b""
    body: bytes = b""
    credentials: str = ""  # "client" (Basic), "bearer", or none


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    family: str
    method: str
    query: bytes
    body: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.endpoint.name}/{self.family}: {self.method} ?{self.query[:60]!r} {self.body[:60]!r}"


def endpoints(*, client_id: str, redirect_uri: str) -> list[Endpoint]:
    authorize = (
        f"response_type=code&client_id={client_id}&redirect_uri={redirect_uri}&scope=openid&state=s&nonce=n"
        "&code_challenge=" + "A" * 43 + "&code_challenge_method=S256"
    ).encode()
    return [
        Endpoint("authorize", "/oauth/authorize", ("GET", "POST"), json=False, query=authorize),
        Endpoint(
            "token",
            "/oauth/token",
            ("POST",),
            json=True,
            body=b"grant_type=client_credentials",
            credentials="client",
        ),
        Endpoint(
            "introspect",
            "/oauth/introspect",
            ("POST",),
            json=True,
            body=b"token=unknown",
            credentials="client",
        ),
        Endpoint(
            "revoke", "/oauth/revoke", ("POST",), json=True, body=b"token=unknown", credentials="client"
        ),
        Endpoint("userinfo", "/oauth/userinfo", ("GET", "POST"), json=True, credentials="bearer"),
        Endpoint("jwks", "/.well-known/jwks.json", ("GET", "HEAD"), json=False),
        Endpoint("discovery", "/.well-known/openid-configuration", ("GET", "HEAD"), json=False),
        Endpoint("metadata", "/.well-known/oauth-authorization-server", ("GET", "HEAD"), json=False),
        Endpoint("audit_keys", "/.well-known/audit-keys.json", ("GET", "HEAD"), json=False),
        Endpoint(
            "logout", "/oauth/logout", ("GET", "POST"), json=False, query=f"client_id={client_id}".encode()
        ),
        Endpoint(
            "login", "/accounts/login", ("GET", "POST"), json=False, body=b"email=a%40example.com&password=x"
        ),
        Endpoint("mfa", "/accounts/mfa", ("GET", "POST"), json=False, body=b"method=totp&code=123456"),
        Endpoint(
            "enroll", "/accounts/mfa/enroll", ("GET", "POST"), json=False, body=b"method=totp&code=123456"
        ),
        Endpoint("security", "/accounts/security", ("GET",), json=False),
        Endpoint(
            "admin_login",
            "/admin/login/",
            ("GET", "POST"),
            json=False,
            body=b"username=a%40example.com&password=x",
        ),
        Endpoint("healthz", "/healthz", ("GET",), json=False),
    ]


CHARSETS = [
    "latin-1",
    "iso-8859-1",
    "utf-16",
    "utf-16le",
    "utf-32",
    "UTF8",
    "us-ascii",
    "cp1252",
    "bogus-charset",
    '"utf-8"',
    "",
    "utf-8; charset=latin-1",
]

CONTENT_TYPES: list[tuple[str | None, bytes]] = [
    ("application/json", b'{"grant_type": "client_credentials", "token": "t"}'),
    ("application/json", b"[1, 2, {"),
    ("application/json; charset=utf-16", '{"token": "t"}'.encode("utf-16")),
    (
        "multipart/form-data; boundary=XYZ",
        b'--XYZ\r\nContent-Disposition: form-data; name="token"\r\n\r\nt\r\n--XYZ--\r\n',
    ),
    ("multipart/form-data; boundary=XYZ", b"--XYZ\r\nContent-Disposition: form-data\r\n\r\nbroken"),
    ("multipart/form-data", b"no boundary at all"),
    ("multipart/form-data; boundary=" + "B" * 300, b"--" + b"B" * 300 + b"--"),
    ("text/plain", b"grant_type=client_credentials"),
    ("application/xml", b"<grant_type>client_credentials</grant_type>"),
    (None, b"grant_type=client_credentials"),
    ("", b"grant_type=client_credentials"),
    (f"{FORM};;;", b"grant_type=client_credentials"),
    (f"{FORM}, text/html", b"grant_type=client_credentials"),
    ("*/*", b"grant_type=client_credentials"),
    (FORM + "; boundary=x; charset", b"grant_type=client_credentials"),
]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


AUTHORIZATIONS = [
    "Basic é",
    "Basic Ã©",  # what a server hands over for the UTF-8 bytes of "é" (ISO-8859-1 decoding)
    "Basic " + "é" * 40,
    "Basic ☃",
    "Basic %%%not-base64",
    "Basic ====",
    "Basic " + _b64(b"\xff\xfe:secret"),
    "Basic " + _b64("clïent:sécret".encode("latin-1")),
    "Basic " + _b64("clïent:sécret".encode()),
    "Basic " + _b64(b"client\x00id:secret"),
    "Basic " + _b64(b"no-colon"),
    "Basic " + _b64(b":"),
    "Basic " + _b64(b"%ZZ:%ZZ"),
    "Basic " + _b64(b"a" * 300 + b":" + b"b" * 300),
    "Basic " + "A" * 8000,
    "Basic    ",
    "Basic",
    "basic " + _b64(b"x:y"),
    "Bearer é",
    "Bearer ",
    "Bearer a\x00b",
    "Bearer eyJ.eyJ.",
    "Bearer " + "x" * 8000,
    "Digest username=x",
    "Negotiate ☃",
    "\x00",
    "é",
]

BODIES = [
    b"grant_type=%FF%FE&token=%C0%AF",
    b"grant_type=\xff\xfe&token=\xc0\xaf",
    b"to\xc3ken=a",
    b"token=a%00b",
    b"token=a\x00b",
    b"to%00ken=a",
    b"token=a&token=b&grant_type=x&grant_type=y",
    b"=&=&=&&&",
    b"%",
    b"%%%",
    b"token=%zz%",
    b"a=" + b"%E2%28%A1" * 50,
    "token=ünïcødé-東京-\u202e-🙂".encode(),
    b"token=" + b"x" * 70_000,
    b"&".join(b"f%d=1" % i for i in range(150)),
    b"token=" + b"A" * 10_000,
    b"\r\n\r\n",
    b"\x00\x00\x00\x00",
]

QUERIES = [
    b"client_id=%FF%FE",
    b"state=\xff\xfe",
    b"%FF=1",
    b"scope=%E2%28%A1",
    b"a%00b=1",
    b"state=a%00b",
    b"client_id=a&client_id=b",
    b"&".join(b"f%d=1" % i for i in range(150)),
    b"state=" + b"S" * 8000,
    b"%",
    b"==&&==",
    b"redirect_uri=javascript:alert(1)",
]

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "BREW"]

HEADERS: list[dict[str, str]] = [
    {"CONTENT_LENGTH": "abc"},
    {"CONTENT_LENGTH": "-1"},
    {"CONTENT_LENGTH": "99999999999999999999"},
    {"HTTP_X_FORWARDED_FOR": "not-an-ip, ☃, 999.1.1.1"},
    {"HTTP_X_FORWARDED_FOR": ",,,,"},
    {"HTTP_X_REQUEST_ID": "é" * 40},
    {"HTTP_X_REQUEST_ID": "../../etc/passwd\r\nX: y"},
    {"HTTP_COOKIE": "uaa_session=é; uaa_csrf=\x00"},
    {"HTTP_COOKIE": "uaa_session=" + "a" * 4000},
    {"HTTP_COOKIE": "=;=;;;"},
    {"HTTP_IF_NONE_MATCH": 'W/"é", *, "' + "x" * 500},
    {"HTTP_ACCEPT": "application/json;q=é"},
    {"HTTP_ACCEPT_LANGUAGE": "é-ÉÉ;q=2, " + "x" * 300},
    {"HTTP_X_FORWARDED_PROTO": "gopher"},
    {"HTTP_ORIGIN": "null"},
    {"HTTP_REFERER": "http://[::1"},
    {"HTTP_USER_AGENT": "é\x00" * 300},
    {"HTTP_DPOP": "é.é.é"},
]


def _form(endpoint: Endpoint, charset: str | None = None) -> str:
    return FORM if charset is None else f"{FORM}; charset={charset}"


def _post_method(endpoint: Endpoint) -> str:
    return "POST" if "POST" in endpoint.methods else endpoint.methods[0]


def _targeted(endpoint: Endpoint, auth: str) -> list[Case]:
    cases: list[Case] = []
    base_headers = {"HTTP_AUTHORIZATION": auth} if endpoint.credentials == "client" else {}
    post = _post_method(endpoint)
    body = endpoint.body or b"a=b"

    def add(family: str, **kwargs: object) -> None:
        values: dict[str, object] = {
            "method": post,
            "query": endpoint.query,
            "body": body if post == "POST" else b"",
            "content_type": _form(endpoint),
            "headers": dict(base_headers),
        }
        values.update(kwargs)
        cases.append(Case(endpoint=endpoint, family=family, **values))  # type: ignore[arg-type]

    if "POST" in endpoint.methods:
        for charset in CHARSETS:
            add("charset", content_type=_form(endpoint, charset))
        for content_type, raw in CONTENT_TYPES:
            add("content-type", content_type=content_type, body=raw)
        for raw in BODIES:
            add("body", body=raw)
    if endpoint.credentials:
        for authorization in AUTHORIZATIONS:
            add("authorization", headers={"HTTP_AUTHORIZATION": authorization})
    for raw in QUERIES:
        add(
            "query",
            method=endpoint.methods[0],
            query=raw,
            body=b"" if endpoint.methods[0] != "POST" else body,
        )
    for method in METHODS:
        add("method", method=method, body=body if method in ("POST", "PUT", "PATCH") else b"")
    return cases


def _random_case(rng: random.Random, endpoint: Endpoint, auth: str) -> Case:
    method = rng.choice([*endpoint.methods, *endpoint.methods, rng.choice(METHODS)])
    headers: dict[str, str] = {}
    roll = rng.random()
    if endpoint.credentials == "client" and roll < 0.5:
        headers["HTTP_AUTHORIZATION"] = auth
    elif roll < 0.8:
        headers["HTTP_AUTHORIZATION"] = rng.choice(AUTHORIZATIONS)
    headers.update(rng.choice(HEADERS))
    content_type, body = rng.choice(
        [
            (_form(endpoint), endpoint.body or b"a=b"),
            (_form(endpoint, rng.choice(CHARSETS)), endpoint.body or b"a=b"),
        ]
        + [(_form(endpoint), raw) for raw in BODIES]
        + CONTENT_TYPES
    )
    if rng.random() < 0.3:  # some raw random bytes, seeded
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    query = rng.choice([endpoint.query, endpoint.query, *QUERIES])
    if method not in ("POST", "PUT", "PATCH"):
        body, content_type = b"", None
    return Case(endpoint, "random", method, query, body, content_type, headers)


def corpus(
    *, client_id: str, redirect_uri: str, auth: str, seed: int = SEED, random_cases: int = 96
) -> list[Case]:
    """Every targeted case for every endpoint, then ``random_cases`` seeded combinations."""
    every = endpoints(client_id=client_id, redirect_uri=redirect_uri)
    cases = [case for endpoint in every for case in _targeted(endpoint, auth)]
    rng = random.Random(seed)
    cases += [_random_case(rng, rng.choice(every), auth) for _ in range(random_cases)]
    # Per-endpoint header junk on a well-formed request.
    for endpoint in every:
        for headers in HEADERS:
            merged = {"HTTP_AUTHORIZATION": auth} if endpoint.credentials == "client" else {}
            merged.update(headers)
            method = _post_method(endpoint)
            body = (endpoint.body or b"a=b") if method == "POST" else b""
            cases.append(
                Case(endpoint, "headers", method, endpoint.query, body, FORM if body else None, merged)
            )
    return cases
