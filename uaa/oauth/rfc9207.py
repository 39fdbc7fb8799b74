"""RFC 9207 OAuth 2.0 Authorization Server Issuer Identification: ``iss`` in every authorization response.

§2: "In authorization responses to the client, including error responses, an authorization server
supporting this specification MUST indicate its identity by including the iss parameter in the
response", so that a client talking to several servers can tell which one answered (a mix-up attack,
RFC 9700 §4.4). UAA's issuer identifier is ``UAA_ISSUER``.

Every redirect of the authorization endpoint back to a client passes through ``with_iss``
(``uaa.oauth.views.AuthorizeView.redirect``): the code, oauthlib's errors and UAA's own (``prompt=none``,
a refused consent answer). django-oauth-toolkit adds ``iss`` to the code response already
(``COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS``), by the same rule: one ``iss``, UAA's, whatever the
registered redirect URI's own query holds. Discovery says so (RFC 9207 §3:
``authorization_response_iss_parameter_supported``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from oauthlib.common import add_params_to_uri

PARAMETER = "iss"
METADATA = {"authorization_response_iss_parameter_supported": True}  # §3


def with_iss(uri: str) -> str:
    """``uri`` with exactly one ``iss``, the issuer's; unchanged when it has that already. Only a
    redirect URI that carries ``iss`` of its own is re-encoded (without it)."""
    issuer = settings.UAA_ISSUER
    parts = urlsplit(uri)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    present = [value for name, value in pairs if name == PARAMETER]
    if present == [issuer]:
        return uri
    if present:
        query = urlencode([(name, value) for name, value in pairs if name != PARAMETER])
        uri = urlunsplit(parts._replace(query=query))
    return str(add_params_to_uri(uri, [(PARAMETER, issuer)]))
