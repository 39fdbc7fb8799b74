"""GET /metrics: the Prometheus text exposition of uaa/metrics.py, for scrapers only.

Open to a client address (tokens/clientip.py: ``X-Forwarded-For`` only from ``UAA_TRUSTED_PROXIES``) in
``UAA_METRICS_ALLOWED_NETWORKS`` (loopback by default), or to a bearer access token carrying the
``uaa.metrics`` scope, checked as the admin API checks its tokens (uaa/api/auth.py; the scope is one of
``UAA_ADMIN_SCOPES``, so only a client-credentials client registered for it can hold it). Anything else:
403, or 401 with ``WWW-Authenticate`` for a token that is not valid (RFC 6750 §3.1), and no metric text.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from tokens.clientip import client_address
from uaa import metrics
from uaa.api.auth import REALM, AccessTokenAuthentication

logger = logging.getLogger(__name__)

SCOPE = "uaa.metrics"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def allowed_networks(value: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in value:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            logger.error("uaa.metrics_network_invalid", extra={"network": entry[:64]})
    return tuple(networks)


def from_allowed_network(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_address(request.META))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    networks = allowed_networks(tuple(settings.UAA_METRICS_ALLOWED_NETWORKS))
    return any(address.version == network.version and address in network for network in networks)


def _refused(status: int, error: str, description: str, challenge: str = "") -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    if challenge:
        response["WWW-Authenticate"] = challenge
    return response


def _token_refusal(request: HttpRequest) -> JsonResponse | None:
    """``None`` when the bearer token holds ``uaa.metrics``; else the 401 or 403."""
    try:
        caller = AccessTokenAuthentication().authenticate(Request(request))
    except AuthenticationFailed:
        challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        return _refused(401, "invalid_token", "The access token is invalid, expired or revoked.", challenge)
    if caller is not None and SCOPE in caller[0].scopes:
        return None
    challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{SCOPE}"'
    return _refused(403, "insufficient_scope", f"The access token lacks the {SCOPE} scope.", challenge)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not from_allowed_network(request):
        if not request.META.get("HTTP_AUTHORIZATION"):
            return _refused(403, "access_denied", "Metrics are served to allowed networks and tokens only.")
        refusal = _token_refusal(request)
        if refusal is not None:
            return refusal
    response = HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response
