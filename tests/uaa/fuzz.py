"""A bounded, reproducible corpus of malformed requests for every endpoint (tests/uaa/test_bad_input.py).

``corpus(seed=SEED, ...)`` always returns the same cases for the same seed and context: targeted families
(odd charsets, hostile ``Authorization`` headers, broken bodies and query strings, wrong methods, JSON and
multipart bodies, junk headers, hostile client assertions) for each endpoint they apply to, each parameter
of an endpoint's well-formed request mutated in turn (``MUTATIONS``: numbers out of range, deep nesting,
lone surrogates, NUL, values just over a column's length and far over a header buffer, a URI urllib cannot
split), then seeded random combinations of the same ingredients. Bodies and query strings are bytes, as a
WSGI server hands them over (the query string and header values decoded as ISO-8859-1, PEP 3333).

Several of these fail only on PostgreSQL (NUL in text, a value longer than its varchar): CI runs the fuzz
test on both databases.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from urllib.parse import quote

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


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jws(header: bytes | dict[str, object], payload: bytes | dict[str, object]) -> str:
    """A compact JWS of the given parts and a dummy signature: every refusal here comes before a signature
    is checked."""
    parts = [json.dumps(part).encode() if isinstance(part, dict) else part for part in (header, payload)]
    return ".".join([_b64url(parts[0]), _b64url(parts[1]), _b64url(b"s" * 64)])


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "iss": "svc",
        "sub": "svc",
        "aud": "http://testserver",
        "exp": 1_900_000_000,
        "iat": 1_800_000_000,
        "jti": "j",
    }
    claims.update(overrides)
    return claims


ES256: dict[str, object] = {"alg": "ES256", "kid": "k"}
DEEP = b"[" * 3000 + b"]" * 3000
# Client assertions (RFC 7523) sent by nobody in particular: numbers no calendar holds, JSON deeper than
# the recursion limit, lone surrogates and NUL where a client_id or jti goes, a crit header, an oversized one.
ASSERTIONS = [
    _jws(ES256, _claims(exp=99999999999999999999)),
    _jws(ES256, _claims(exp=-(2**63))),
    _jws(ES256, _claims(nbf=10**400)),
    _jws(ES256, _claims(iat=-(10**30))),
    _jws(ES256, _claims(exp=1e308)),
    _jws(ES256, DEEP),
    _jws(DEEP, _claims()),
    _jws(ES256, _claims(iss="\ud800", sub="\ud800")),
    _jws(ES256, _claims(iss="a\x00b", sub="a\x00b")),
    _jws(ES256, _claims(jti="\udfff")),
    _jws({"alg": "ES256", "kid": "\ud800", "crit": ["exp"]}, _claims()),
    _jws(ES256, _claims(aud=json.loads("[" * 500 + "]" * 500))),
    _jws(ES256, _claims(pad="p" * 20_000)),
    _jws(ES256, b"[" * 900 + b"]" * 900),
]
ASSERTION_TYPE = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"

# Bearer tokens whose header jwcrypto refuses to describe (RFC 7515 §4.1.11 crit) or cannot parse.
BEARERS = [
    "Bearer " + _jws({"alg": "RS256", "kid": "x", "crit": ["exp"]}, {"sub": "x"}),
    "Bearer " + _jws({"alg": "RS256", "kid": "x", "b64": False, "crit": ["b64"]}, {"sub": "x"}),
    "Bearer " + _jws(DEEP, {"sub": "x"}),
    "Bearer " + _jws({"alg": "RS256", "kid": "\ud800", "typ": "at+jwt"}, {"sub": "x"}),
]

# Values a parameter of a well-formed request is replaced with, percent-encoded as a client would send them.
MUTATIONS = [
    b"99999999999999999999",  # numbers out of range
    b"-9223372036854775809",
    b"1e400",
    b"%5B" * 3000,  # deep nesting
    b"%7B%22a%22%3A" * 500,
    b"%ED%A0%80",  # a lone surrogate in UTF-8 (not UTF-8 at all)
    b"%5Cud800",  # and as a JSON escape
    b"%00",  # NUL: PostgreSQL refuses it in text
    b"x" * 101,  # just over client_id's varchar(100)
    b"x" * 256,  # just over nonce's varchar(255)
    b"x" * 3000,
    b"x" * 20_000,  # over a proxy's header buffer once it comes back in a Location header
    b"http%3A%2F%2F%5B%3A%3A1",  # http://[::1: urllib cannot split it
    b"",
]


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
    *BEARERS,
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
    {"HTTP_COOKIE": "uaa_session=" + "\x00" * 8},  # NUL in the session key: PostgreSQL refuses it
    {"HTTP_COOKIE": "uaa_session=abcdefgh\x00; uaa_csrf=" + "\x00" * 32},
    {"HTTP_COOKIE": 'uaa_session="\\000\\000\\000\\000\\000\\000\\000\\000"'},  # the red team's octal escapes
    {"HTTP_COOKIE": "uaa_session=" + "%00" * 8},
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


def _replace(raw: bytes, name: bytes, value: bytes) -> bytes:
    """``raw`` (a query string or form body) with parameter ``name``'s value replaced by ``value``."""
    return b"&".join(
        name + b"=" + value if pair.split(b"=", 1)[0] == name else pair for pair in raw.split(b"&")
    )


def _mutated(endpoint: Endpoint, auth: str) -> list[Case]:
    """Each parameter of the endpoint's well-formed request (query and body) replaced by each mutation."""
    cases: list[Case] = []
    headers = {"HTTP_AUTHORIZATION": auth} if endpoint.credentials == "client" else {}
    post = _post_method(endpoint)
    for where, raw in (("query", endpoint.query), ("body", endpoint.body)):
        names = [pair.split(b"=", 1)[0] for pair in raw.split(b"&") if pair]
        for name in names:
            for value in MUTATIONS:
                query = _replace(raw, name, value) if where == "query" else endpoint.query
                body = _replace(raw, name, value) if where == "body" else endpoint.body
                method = endpoint.methods[0] if where == "query" else post
                if method != "POST":
                    body = b""
                content_type = FORM if method == "POST" else None
                family = f"mutation:{name.decode()}"
                cases.append(Case(endpoint, family, method, query, body, content_type, dict(headers)))
    return cases


def _assertions(endpoint: Endpoint) -> list[Case]:
    """Hostile client assertions (``ASSERTIONS``), the only client authentication of the request."""
    cases: list[Case] = []
    for signed in ASSERTIONS:
        body = (
            f"grant_type=client_credentials&token=t&client_assertion_type={ASSERTION_TYPE}"
            f"&client_assertion={quote(signed, safe='')}"
        ).encode()
        cases.append(Case(endpoint, "assertion", "POST", b"", body, FORM, {}))
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
    if query and rng.random() < 0.3:  # one parameter of it replaced by a mutation
        name = rng.choice([pair.split(b"=", 1)[0] for pair in query.split(b"&") if pair])
        query = _replace(query, name, rng.choice(MUTATIONS))
    if method not in ("POST", "PUT", "PATCH"):
        body, content_type = b"", None
    return Case(endpoint, "random", method, query, body, content_type, headers)


def corpus(
    *, client_id: str, redirect_uri: str, auth: str, seed: int = SEED, random_cases: int = 96
) -> list[Case]:
    """Every targeted case for every endpoint, then ``random_cases`` seeded combinations."""
    every = endpoints(client_id=client_id, redirect_uri=redirect_uri)
    cases = [case for endpoint in every for case in _targeted(endpoint, auth)]
    cases += [case for endpoint in every for case in _mutated(endpoint, auth)]
    cases += [
        case for endpoint in every if endpoint.credentials == "client" for case in _assertions(endpoint)
    ]
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
