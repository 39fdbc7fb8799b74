"""Consent (OIDC Core §3.1.2.4): what a user has already granted a client, and the consent page's answer.

The consent page shows one request; UAA keeps that request server-side (uaa/oauth/interaction.py) and
answers the form from it. The form's hidden copies must equal it: the user may narrow the scopes to a
subset of what the page showed, and change nothing else. What is remembered is what was granted, so a
remembered consent never covers a scope the user was not shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from uaa.oauth import audit, claims
from uaa.oauth.models import Client, Consent

# The request a page is shown for: what django-oauth-toolkit puts in the form's hidden fields.
BOUND = ("response_type", "state", "nonce", "code_challenge", "code_challenge_method", "claims")
NAMED = ("client_id", "redirect_uri")  # which client, and where the answer goes


def covers(*, user: Any, client_id: str, scopes: list[str]) -> bool:
    granted = (
        Consent.objects.filter(user=user, client__client_id=client_id)
        .values_list("scopes", flat=True)
        .first()
    )
    return granted is not None and set(scopes) <= set(granted)


def remember(*, user: Any, client_id: str, scopes: list[str]) -> None:
    client = Client.objects.get(client_id=client_id)
    consent, created = Consent.objects.get_or_create(
        user=user, client=client, defaults={"scopes": sorted(set(scopes))}
    )
    if not created and not set(scopes) <= set(consent.scopes):
        consent.scopes = sorted(set(consent.scopes) | set(scopes))
        consent.save(update_fields=["scopes", "granted_at"])


def refuse(*, user: Any, client_id: str, scopes: list[str], request: Any) -> None:
    """The user said no on the consent page: nothing is remembered, the refusal is recorded."""
    audit.authorization_denied(user=user, client_id=client_id, scopes=scopes, http_request=request)


# --- the consent page and its answer ---------------------------------------------------------------
class AnswerRefused(Exception):
    """The consent form does not answer the request its page showed.

    ``fatal``: it names another client or redirect URI, so nothing may be redirected (RFC 6749 §4.1.2.1).
    """

    def __init__(self, error: str, description: str, *, fatal: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.fatal = fatal


def shown_request(
    *, credentials: Mapping[str, Any], scopes: list[str], resources: list[str], digest: str, query: str
) -> dict[str, Any]:
    """The validated request a consent page shows, JSON-serializable, to be kept for its answer."""
    requested = credentials.get("claims")
    return {
        **{name: credentials.get(name) for name in (*NAMED, *BOUND) if name != "claims"},
        "claims": json.dumps(requested) if requested else None,
        "scopes": list(scopes),
        "resource": list(resources),
        "digest": digest,
        "query": query,
    }


def form_copies(shown: Mapping[str, Any]) -> dict[str, Any]:
    """The form's hidden fields, as django-oauth-toolkit's consent form has them."""
    return {
        **{name: shown.get(name) for name in (*NAMED, *BOUND)},
        "scope": " ".join(shown["scopes"]),
        "resource": " ".join(shown["resource"]) or None,
    }


def credentials_of(shown: Mapping[str, Any], *, granted: list[str] | None = None) -> dict[str, Any]:
    """The credentials django-oauth-toolkit passes to oauthlib for an answered consent page. With the
    ``granted`` scopes, the claims request keeps no claim of a scope the user took off (uaa/oauth/claims.py
    ``answered_request``)."""
    credentials = {name: shown.get(name) for name in (*NAMED, "response_type", "state")}
    for name in ("code_challenge", "code_challenge_method", "nonce", "claims"):
        if shown.get(name):
            credentials[name] = shown[name]
    if credentials.get("claims") and granted is not None:
        narrowed = claims.answered_request(
            credentials["claims"], shown_scopes=shown.get("scopes") or [], granted_scopes=granted
        )
        if narrowed is None:
            del credentials["claims"]
        else:
            credentials["claims"] = narrowed
    if shown.get("resource"):
        credentials["resource"] = list(shown["resource"])  # RFC 8707: a list, as django-oauth-toolkit has it
    return credentials


def _posted(posted: Mapping[str, Any], name: str) -> str:
    return str(posted.get(name) or "")


def check_answer(*, shown: Mapping[str, Any], posted: Mapping[str, Any]) -> list[str]:
    """The scopes the answer grants: a non-empty subset of those shown, in the shown order.

    Raises ``AnswerRefused``: another client or redirect URI (fatal); another value of anything the
    request bound (``invalid_request``: PKCE, state, nonce, RFC 6749 §4.1.2, RFC 7636 §4.4); other
    resources (``invalid_target``, RFC 8707 §2); a scope the page did not show (``invalid_scope``, RFC
    6749 §3.3, §4.1.2.1).
    """
    for name in NAMED:
        if _posted(posted, name) != str(shown.get(name) or ""):
            raise AnswerRefused(
                "invalid_request", "The consent form does not belong to this request.", fatal=True
            )
    for name in BOUND:
        if _posted(posted, name) != str(shown.get(name) or ""):
            raise AnswerRefused("invalid_request", "The consent form was changed.")
    if _posted(posted, "resource").split() != list(shown.get("resource") or []):
        raise AnswerRefused("invalid_target", "The consent form was changed.")
    granted = set(_posted(posted, "scope").split())
    shown_scopes = list(shown.get("scopes") or [])
    if not granted or not granted <= set(shown_scopes):
        raise AnswerRefused("invalid_scope", "Only the scopes shown can be granted.")
    return [scope for scope in shown_scopes if scope in granted]
