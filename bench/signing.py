"""Signing and verification cost per JWT algorithm, as UAA signs tokens (tokens.signing.sign_jwt).

Run:  DEBUG=1 .venv/bin/python bench/signing.py [--seconds 2]

Prints operations per second for each algorithm and the ratio against RS256 measured in the same
run (the machines are noisy: compare ratios, not absolute numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")
os.environ.setdefault("UAA_VAR_DIR", "/tmp/uaa-bench")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/uaa-bench/bench.sqlite3")
os.environ.setdefault("DEBUG", "1")
Path("/tmp/uaa-bench").mkdir(exist_ok=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from jwt.api_jws import PyJWS  # noqa: E402

from tokens.rotation import ensure_active_key  # noqa: E402
from tokens.signing import active_signing_key, sign_jwt, verify_jwt  # noqa: E402

CLAIMS = {
    "iss": "http://localhost:8000",
    "sub": "6f1c1b0e-6a43-4c36-9f3a-6a1f0c2d9e11",
    "aud": "https://api.example.com",
    "client_id": "bench",
    "scope": "openid profile email",
    "iat": 1_900_000_000,
    "exp": 1_900_000_600,
    "jti": "0123456789abcdef0123456789abcdef",
}


def rate(fn, seconds: float) -> float:  # type: ignore[no-untyped-def]
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        count += 20
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    results = {}
    jws = PyJWS()
    for algorithm in ("RS256", "ES256", "EdDSA"):
        ensure_active_key(algorithm=algorithm, now=timezone.now())
        token = sign_jwt(claims=CLAIMS, algorithm=algorithm, typ="at+jwt")
        assert verify_jwt(token, typ="at+jwt") is not None
        key = active_signing_key(algorithm)

        def jose_only(key=key, algorithm=algorithm) -> str:  # type: ignore[no-untyped-def]
            payload = json.dumps(CLAIMS).encode()
            return jws.encode(
                payload, key.private, algorithm=algorithm, headers={"kid": key.kid, "typ": "at+jwt"}
            )

        results[algorithm] = (
            rate(jose_only, args.seconds),
            rate(lambda a=algorithm: sign_jwt(claims=CLAIMS, algorithm=a, typ="at+jwt"), args.seconds),
            rate(lambda t=token: verify_jwt(t, typ="at+jwt"), args.seconds),
        )
    base = results["RS256"]
    print("jose = PyJWT signing alone (the library of tokens/signing.py); sign_jwt/verify_jwt = UAA's path,")
    print("which adds the key lookup: a cached private key to sign, one SELECT of the key's row to verify")
    print(
        f"{'alg':6} {'jose/s':>9} {'ratio':>6} {'sign_jwt/s':>11} {'ratio':>6} {'verify_jwt/s':>13} "
        f"{'ratio':>6}"
    )
    for algorithm, row in results.items():
        cells = " ".join(
            f"{value:{w}.0f} {value / b:5.2f}x" for value, b, w in zip(row, base, (9, 11, 13), strict=True)
        )
        print(f"{algorithm:6} {cells}")


if __name__ == "__main__":
    main()
