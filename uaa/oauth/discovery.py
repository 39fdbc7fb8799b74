"""OpenID Connect Discovery 1.0 §3 and RFC 8414 §2 metadata: exactly what UAA offers.

Every member is a name of the IANA "OAuth Authorization Server Metadata" registry (RFC 8414 §7.1), and every
value is read from what the endpoints do (the settings and modules they obey), never written out a second
time; tests/uaa/test_discovery_truth.py drives each advertised value, and the registered values that are
not advertised, against the running server. Access tokens' algorithm (``UAA_ACCESS_TOKEN_ALG``) has no
registered member (RFC 9068 defines none): a resource server takes it from the JWK its token's ``kid`` names
(docs/integrating-a-resource-server.md).
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.urls import get_script_prefix, reverse

from accounts.mfa.policy import ACR_VALUES_SUPPORTED
from tokens.models import SigningKey
from uaa.oauth import claims, rfc7636, rfc9207
from uaa.oauth.interaction import PROMPT_VALUES_SUPPORTED, RESPONSE_MODES_SUPPORTED
from uaa.oauth.rfc7523 import ALGORITHMS as ASSERTION_ALGORITHMS

SECRET_METHODS = ["client_secret_basic", "client_secret_post"]
PRIVATE_KEY_JWT = "private_key_jwt"  # RFC 7523 §2.2, OIDC Core §9 (uaa/oauth/rfc7523.py)


@functools.cache
def _reversed(name: str, prefix: str) -> str:
    return reverse(name)  # under ``prefix``, the script prefix of the request asking (the key)


def _path(name: str) -> str:
    """``reverse(name)``, once per process and script prefix: the documents are asked for constantly, and
    the URLconf is fixed (a test that changes ``ROOT_URLCONF`` clears it: ``_urlconf_changed``)."""
    return _reversed(name, get_script_prefix())


def _urlconf_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "ROOT_URLCONF":
        _reversed.cache_clear()


setting_changed.connect(_urlconf_changed, dispatch_uid="uaa.oauth.discovery.urlconf_changed")


def _url(name: str) -> str:
    return settings.UAA_ISSUER + _path(name)


def authorization_server_metadata() -> dict[str, Any]:
    """RFC 8414 §2."""
    return {
        "issuer": settings.UAA_ISSUER,
        "authorization_endpoint": _url("oauth:authorize"),
        "token_endpoint": _url("oauth:token"),
        "jwks_uri": _url("tokens:jwks"),
        "revocation_endpoint": _url("oauth:revoke"),
        "introspection_endpoint": _url("oauth:introspect"),
        "userinfo_endpoint": _url("oauth:userinfo"),
        "end_session_endpoint": _url("oauth:logout"),
        "scopes_supported": list(settings.UAA_SCOPES),
        "response_types_supported": list(settings.OAUTH2_PROVIDER["OAUTH2_RESPONSE_TYPES_SUPPORTED"]),
        "response_modes_supported": list(RESPONSE_MODES_SUPPORTED),
        "grant_types_supported": list(settings.OAUTH2_PROVIDER["OAUTH2_GRANT_TYPES_SUPPORTED"]),  # server.py
        "token_endpoint_auth_methods_supported": [*SECRET_METHODS, PRIVATE_KEY_JWT, "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": [*SECRET_METHODS, PRIVATE_KEY_JWT, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": [*SECRET_METHODS, PRIVATE_KEY_JWT],
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "code_challenge_methods_supported": list(rfc7636.METHODS_SUPPORTED),
        **rfc9207.METADATA,
    }


def openid_configuration() -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3: the RFC 8414 document plus the OIDC members."""
    return {
        **authorization_server_metadata(),
        "subject_types_supported": ["public"],
        "acr_values_supported": list(ACR_VALUES_SUPPORTED),
        "id_token_signing_alg_values_supported": [choice for choice, _ in SigningKey.Algorithm.choices],
        # OIDC Core §5.1 by scope and §5.5 one by one (uaa/oauth/claims.py), and what every ID token has.
        "claims_supported": [*claims.USER_CLAIMS, *claims.ID_TOKEN_CLAIMS],
        "prompt_values_supported": list(PROMPT_VALUES_SUPPORTED),  # what AuthorizeView answers
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }
