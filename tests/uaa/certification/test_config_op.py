"""The OpenID Foundation's Config OP plan (``oidcc-config-certification-test-plan``,
``OIDCCConfigTestPlan``): one
module, ``OIDCCDiscoveryEndpointVerification`` (oidcc-discovery-endpoint-verification), against a live UAA.

That a value discovery advertises is what the server does is tests/uaa/test_discovery_truth.py's subject;
this module checks what the suite checks of the document itself.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests

from tests.uaa.certification.flows import standard_flow

# RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# OIDCCCheckDiscEndpointResponseTypesSupported: at least one OpenID Connect response type
OIDC_RESPONSE_TYPES = {
    "code",
    "code id_token",
    "id_token",
    "token id_token",
    "code id_token token",
    "code token",
}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_oidcc_discovery_endpoint_verification(op):
    """``OIDCCDiscoveryEndpointVerification``: ``EnsureDiscoveryEndpointResponseStatusCodeIs200``,
    ``CheckDiscoveryEndpointReturnedJsonContentType``, ``OIDCCCheckDiscEndpointResponseTypesSupported``,
    ``CheckDiscEndpointDiscoveryUrl`` / ``CheckDiscEndpointIssuer`` (the issuer plus
    /.well-known/openid-configuration, OIDC Discovery §4.3), ``CheckDiscEndpointIssuerIsValidUrl``,
    ``CheckDiscEndpointSubjectTypesSupported``, ``OIDCCCheckDiscEndpointIdTokenSigningAlgValuesSupported``
    (RS256), ``CheckDiscEndpointAuthorizationEndpoint`` / ``TokenEndpoint`` / ``UserinfoEndpoint``,
    ``CheckJwksUri``, ``FetchServerKeys`` and ``ValidateJwksSequence`` (public keys with distinct kid),
    ``CheckDiscEndpointClaimsParameterSupported``, ``OIDCCCheckDiscEndpointClaimsSupported``,
    ``OIDCCCheckDiscEndpointGrantTypesSupported`` (a non-empty array),
    ``CheckDiscEndpointScopesSupportedContainsOpenId``,
    ``CheckDiscEndpointScopesSupportedSyntax``, ``CheckDiscEndpointAllEndpointsAreHttps`` (here: the issuer's
    scheme; the live test's issuer is http://127.0.0.1, a deployment's is https, which uaa/checks.py enforces)
    and ``EnsureServerConfigurationCodeChallengeMethodsSupportedIsAnArray``. Then the ID token of a flow
    carries the discovered issuer (the profile's "Discovered issuer matches ID Token iss value")."""
    url = f"{op.base}/.well-known/openid-configuration"
    response = requests.get(url, timeout=20)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    config = response.json()

    assert set(config["response_types_supported"]) & OIDC_RESPONSE_TYPES
    issuer = config["issuer"]
    assert url == issuer.rstrip("/") + "/.well-known/openid-configuration"
    parts = urlsplit(issuer)
    assert parts.scheme in ("https", "http") and parts.netloc and not parts.query and not parts.fragment
    assert (
        set(config["subject_types_supported"]) <= {"public", "pairwise"} and config["subject_types_supported"]
    )
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert "none" not in config["id_token_signing_alg_values_supported"]
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert urlsplit(config[name]).scheme == parts.scheme and urlsplit(config[name]).netloc == parts.netloc
    assert all(urlsplit(v).scheme == parts.scheme for k, v in config.items() if k.endswith("_endpoint"))

    jwks = requests.get(config["jwks_uri"], timeout=20)
    assert (
        jwks.status_code == 200
    )  # FetchServerKeys reads the body as JSON whatever its type (here RFC 7517 §8.5.1's)
    assert jwks.headers["Content-Type"].startswith(("application/json", "application/jwk-set+json"))
    keys = jwks.json()["keys"]
    assert keys and len({key["kid"] for key in keys}) == len(keys)
    assert all(key["kty"] in ("RSA", "EC", "OKP") and not PRIVATE_MEMBERS & set(key) for key in keys)
    assert any(key["alg"] == "RS256" and key.get("use", "sig") == "sig" for key in keys)

    assert isinstance(config["claims_parameter_supported"], bool)
    assert isinstance(config["claims_supported"], list) and "sub" in config["claims_supported"]
    assert (
        isinstance(config["grant_types_supported"], list)
        and "authorization_code" in config["grant_types_supported"]
    )
    assert "openid" in config["scopes_supported"]
    assert all(SCOPE_TOKEN.fullmatch(scope) for scope in config["scopes_supported"])
    assert isinstance(config["code_challenge_methods_supported"], list)
    assert (
        config["request_parameter_supported"] is False and config["request_uri_parameter_supported"] is False
    )

    flow = standard_flow(op.rp(), op.browser(), response_mode="default")
    assert flow.id_token["iss"] == issuer
