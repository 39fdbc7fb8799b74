"""jwcrypto vs PyJWT vs joserfc: signing and verifying a JWT access token, ES256 and RS256 (issue 12 item 3).

Run:  .venv/bin/python bench/jose_libraries.py [--seconds 1] [--rounds 3]

The same claims (an RFC 9068 access token's), the same keys (P-256 and RSA 2048, made with `cryptography`,
which all three use underneath), each library's own API: a key object imported once, then
  sign:    jwcrypto jwt.JWT(...).make_signed_token(key); PyJWT jwt.encode(claims, key, algorithm, headers);
           joserfc jwt.encode(header, claims, key)
  verify:  jwcrypto jwt.JWT(jwt=token, key=key, expected_type="JWS") (signature and exp/nbf);
           PyJWT jwt.decode(token, key, algorithms=[alg], audience=...) (signature, exp, aud);
           joserfc jwt.decode(token, key, algorithms=[alg]) (signature only: claims are a separate step,
           JWTClaimsRegistry.validate, which is timed with it here)
Every token is verified by the other two libraries before timing (interoperability). Operations per second,
median of ``--rounds`` interleaved rounds (the libraries take turns, so a busy machine slows them alike);
the ratio is against jwcrypto in the same run.

A second table, "as UAA uses it" (tokens/signing.py): JWS only, claims serialized and checked by the caller
(UAA holds every token's record and checks expiry there), the ``cryptography`` key object made once
  sign:    jwcrypto jwt.JWT(...).make_signed_token(key) (UAA until issue 12 item 3);
           PyJWT PyJWS().encode(payload, key, alg, headers);
           joserfc jws.serialize_compact(header, payload, key)
  verify:  jwcrypto jws.JWS().deserialize(token) + .verify(key, alg=alg) (UAA until issue 12 item 3);
           PyJWT PyJWS().decode_complete(token, key, algorithms=[alg]);
           joserfc jws.deserialize_compact(token, key, algorithms=[alg])
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws as rfc_jws
from joserfc import jwt as rfc_jwt
from joserfc.jwk import ECKey, RSAKey
from jwcrypto import jwk
from jwcrypto import jws as jc_jws
from jwcrypto import jwt as jc_jwt
from jwt.api_jws import PyJWS

NOW = int(time.time())
AUD = "https://api.example.com"
CLAIMS: dict[str, str | int] = {
    "iss": "https://id.example.com",
    "sub": "6f1c1b0e-6a43-4c36-9f3a-6a1f0c2d9e11",
    "aud": AUD,
    "client_id": "bench",
    "scope": "openid profile email",
    "iat": NOW,
    "exp": NOW + 3600,
    "jti": "0123456789abcdef0123456789abcdef",
}
KID = "bench-key"


def pem(private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            fn()
        count += 10
    return count / elapsed


def bound(verify: Callable[[str], object], token: str) -> Callable[[], object]:
    return lambda: verify(token)


def operations(alg: str) -> dict[str, dict[str, Callable[[], object]]]:
    private = (
        ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else rsa.generate_private_key(65537, 2048)
    )
    private_pem = pem(private)
    public_key = private.public_key()
    header = {"alg": alg, "kid": KID, "typ": "at+jwt"}

    jc_key = jwk.JWK.from_pem(private_pem)
    jc_public = jwk.JWK.from_pem(
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rfc_key = (ECKey if alg == "ES256" else RSAKey).import_key(private_pem)
    rfc_public = (ECKey if alg == "ES256" else RSAKey).import_key(
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    registry = rfc_jwt.JWTClaimsRegistry(aud={"essential": True, "value": AUD})

    def jc_sign() -> str:
        token = jc_jwt.JWT(header=header, claims=CLAIMS)
        token.make_signed_token(jc_key)
        return str(token.serialize())

    def py_sign() -> str:
        return pyjwt.encode(CLAIMS, private, algorithm=alg, headers={"kid": KID, "typ": "at+jwt"})

    def rfc_sign() -> str:
        return rfc_jwt.encode(header, CLAIMS, rfc_key, algorithms=[alg])

    tokens = {"jwcrypto": jc_sign(), "PyJWT": py_sign(), "joserfc": rfc_sign()}

    def jc_verify(token: str) -> object:
        return json.loads(jc_jwt.JWT(jwt=token, key=jc_public, expected_type="JWS", algs=[alg]).claims)

    def py_verify(token: str) -> object:
        return pyjwt.decode(token, public_key, algorithms=[alg], audience=AUD)

    def rfc_verify(token: str) -> object:
        decoded = rfc_jwt.decode(token, rfc_public, algorithms=[alg])
        registry.validate(decoded.claims)
        return decoded.claims

    verifiers = {"jwcrypto": jc_verify, "PyJWT": py_verify, "joserfc": rfc_verify}
    for signer, token in tokens.items():  # interoperability: each library reads the others' tokens
        for name, verify in verifiers.items():
            claims = verify(token)
            assert isinstance(claims, dict) and claims["jti"] == CLAIMS["jti"], (signer, name)
    return {
        "sign": {"jwcrypto": jc_sign, "PyJWT": py_sign, "joserfc": rfc_sign},
        "verify": {name: bound(verify, tokens[name]) for name, verify in verifiers.items()},
    }


def jws_operations(alg: str) -> dict[str, dict[str, Callable[[], object]]]:
    """Sign and verify as tokens/signing.py does: compact JWS of already-serialized claims."""
    private = (
        ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else rsa.generate_private_key(65537, 2048)
    )
    public_key = private.public_key()
    header = {"alg": alg, "kid": KID, "typ": "at+jwt"}
    payload = json.dumps(CLAIMS).encode()
    jc_key, jc_public = jwk.JWK.from_pyca(private), jwk.JWK.from_pyca(public_key)
    key_type = ECKey if alg == "ES256" else RSAKey
    rfc_key = key_type.import_key(pem(private))
    rfc_public = key_type.import_key(
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    py_jws = PyJWS()

    def jc_sign() -> str:
        token = jc_jwt.JWT(header=header, claims=payload.decode())
        token.make_signed_token(jc_key)
        return str(token.serialize())

    def py_sign() -> str:
        return py_jws.encode(payload, private, algorithm=alg, headers={"kid": KID, "typ": "at+jwt"})

    def rfc_sign() -> str:
        return rfc_jws.serialize_compact(header, payload, rfc_key, algorithms=[alg])

    def jc_verify(token: str) -> object:
        parsed = jc_jws.JWS()
        parsed.deserialize(token)
        parsed.verify(jc_public, alg=alg)
        return json.loads(parsed.payload)

    def py_verify(token: str) -> object:
        return json.loads(py_jws.decode_complete(token, public_key, algorithms=[alg])["payload"])

    def rfc_verify(token: str) -> object:
        return json.loads(rfc_jws.deserialize_compact(token, rfc_public, algorithms=[alg]).payload)

    tokens = {"jwcrypto": jc_sign(), "PyJWT": py_sign(), "joserfc": rfc_sign()}
    verifiers = {"jwcrypto": jc_verify, "PyJWT": py_verify, "joserfc": rfc_verify}
    for signer, token in tokens.items():
        for name, verify in verifiers.items():
            claims = verify(token)
            assert isinstance(claims, dict) and claims["jti"] == CLAIMS["jti"], (signer, name)
    return {
        "sign": {"jwcrypto": jc_sign, "PyJWT": py_sign, "joserfc": rfc_sign},
        "verify": {name: bound(verify, tokens[name]) for name, verify in verifiers.items()},
    }


def table(title: str, make: Callable[[str], dict[str, dict[str, Callable[[], object]]]], args: Any) -> None:
    print(title)
    print(f"{'alg':6} {'op':7} {'jwcrypto':>10} {'PyJWT':>10} {'ratio':>6} {'joserfc':>10} {'ratio':>6}")
    for alg in ("ES256", "RS256"):
        ops = make(alg)
        for op, libraries in ops.items():
            measured: dict[str, list[float]] = {name: [] for name in libraries}
            for round_ in range(args.rounds):
                order = list(libraries) if round_ % 2 == 0 else list(reversed(libraries))
                for name in order:
                    measured[name].append(rate(libraries[name], args.seconds))
            med = {name: statistics.median(values) for name, values in measured.items()}
            base = med["jwcrypto"]
            print(
                f"{alg:6} {op:7} {base:10.0f} {med['PyJWT']:10.0f} {med['PyJWT'] / base:5.2f}x "
                f"{med['joserfc']:10.0f} {med['joserfc'] / base:5.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed window")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    versions = {
        name: importlib.metadata.version(name) for name in ("jwcrypto", "PyJWT", "joserfc", "cryptography")
    }
    print(
        "JOSE libraries, ops/s (median of",
        args.rounds,
        "interleaved rounds of",
        args.seconds,
        "s):",
        ", ".join(f"{k} {v}" for k, v in versions.items()),
    )
    table("JWT, each library's own API (signature and claims):", operations, args)
    table("JWS as UAA uses it (tokens/signing.py: signature only, keys made once):", jws_operations, args)


if __name__ == "__main__":
    main()
