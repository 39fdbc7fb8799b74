"""The authorization endpoint's decision (OIDC Core §3.1.2.1 to §3.1.2.4, §3.1.2.6): sign in, step up, ask for
consent or issue the code, or the error ``prompt=none`` calls for instead, as one pure function
(``decide``) of what the request asks (``Ask``), what the session holds (``SessionState``) and what this
user's use of the client requires (``ClientState``), in the spirit of node-oidc-provider's
``interaction_policy/prompts``. ``decide_request`` reads those from the session and the database.
``uaa.oauth.views.AuthorizeView`` asks it on the GET and again when the consent page is answered, so
the two cannot disagree, and renders what it returns; tests/uaa/test_interaction.py is its table. Before
anything is decided, ``check_request`` refuses the parameters UAA does not answer (OIDC Core §6, response
modes, ``prompt``, ``max_age``; PKCE is the server's).

Between those steps the endpoint keeps two things in the browser's (server-side) session:

- a *re-authentication demand*: when a request asks for a sign-in the session cannot answer as it is
  (``prompt=login``, ``max_age`` exceeded), the time of the demand, under the request's digest. The
  sign-in page sends the browser back to the request unchanged; only a sign-in *after* the demand
  answers it (``auth_time`` ≥ that time), so opening the way back without signing in asks again. It is
  spent when the request's code is issued (or refused): the same URL opened later asks again.
- the request a consent page was shown for (``hold_consent``), so that its answer is checked against
  what was shown, not against the form's copies, and is answered once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, QueryDict
from django.utils import timezone
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from accounts import sessions
from accounts.mfa import policy
from uaa.oauth import consent, hints
from uaa.oauth.models import Client

# OIDC Core §3.1.2.1 defines none, login, consent and select_account. UAA has one account per browser
# session and no account chooser, so select_account is refused rather than ignored (as node-oidc-provider
# does with values it does not support). Discovery publishes this tuple (uaa/oauth/discovery.py).
PROMPT_VALUES_SUPPORTED = ("none", "login", "consent")
PROMPT_REFUSED = "prompt may hold login and consent, or none alone (lower case, space-separated)."
MAX_AGE_REFUSED = "max_age must be a number of seconds."
# OAuth 2.0 Multiple Response Type Encoding Practices §2.1 (query, the code flow's default) and OAuth 2.0
# Form Post Response Mode (uaa/oauth/form_post.py); any other response_mode, fragment included, is refused
# (check_request), so discovery's list (uaa/oauth/discovery.py) is what the endpoint does, not a default.
RESPONSE_MODES_SUPPORTED = ("query", "form_post")
RESPONSE_MODE_REFUSED = "response_mode must be query or form_post (or left out)."
NOT_SUPPORTED = ("request", "request_uri")  # OIDC Core §6: not supported, so MUST be refused

REAUTHENTICATION = "uaa_reauthentication"  # {request digest: time the sign-in was demanded}
HELD_CONSENT = "uaa_consent_pages"  # {page id: the request a consent page was shown for}
KEPT = 10  # per browser: a few tabs' worth; the oldest is dropped first
# A demand is answered by a sign-in within this time (the sign-in and the consent page included); after it,
# the same request asks again, so an old sign-in never passes for a fresh one.
REAUTHENTICATION_SECONDS = 600


class Step(StrEnum):
    SIGN_IN = "sign_in"  # not signed in, prompt=login, or max_age exceeded: (re-)authenticate
    STEP_UP = "step_up"  # signed in, but without the second factor this request needs
    CONSENT = "consent"  # ask the user: the consent page
    ISSUE = "issue"  # nothing left to ask


# OIDC Core §3.1.2.6, for prompt=none: a sign-in or a second factor is authentication (login_required),
# the consent page is consent (consent_required). UAA has no other interaction, so interaction_required
# is never the answer.
SILENT_ERRORS = {
    Step.SIGN_IN: "login_required",
    Step.STEP_UP: "login_required",
    Step.CONSENT: "consent_required",
}


@dataclass(frozen=True)
class Ask:
    """What an authorization request asks of the session (OIDC Core §3.1.2.1)."""

    prompts: frozenset[str]
    max_age: int | None
    acr_values: tuple[str, ...]
    hinted_sub: str | None = None  # the sub of the request's id_token_hint (uaa/oauth/hints.py)

    @classmethod
    def parse(cls, query: Mapping[str, Any]) -> Ask:
        """``ValueError`` for a prompt UAA does not answer, a ``max_age`` that is not whole seconds, or an
        ``id_token_hint`` that is not an ID token UAA issued (``hints.InvalidHint``)."""
        return cls(
            prompts=parse_prompt(str(query.get("prompt") or "")),
            max_age=parse_max_age(query.get("max_age")),
            acr_values=tuple(str(query.get("acr_values") or "").split()),
            hinted_sub=hints.hinted_subject(query.get("id_token_hint")),
        )

    @property
    def wants_fresh_sign_in(self) -> bool:
        """A sign-in must be one made for this request (prompt=login) or recent enough (max_age)."""
        return "login" in self.prompts or self.max_age is not None


def check_request(query: Mapping[str, Any], *, credentials: Mapping[str, Any]) -> None:
    """Authorization request parameters oauthlib would accept but UAA refuses, as the oauthlib error to
    redirect (``invalid_request``, or OIDC Core §6's codes). Asked once the client and redirect URI are
    known to be valid, on the request's query and oauthlib's ``credentials`` of it.

    - ``request``/``request_uri``: OIDC Core §6, not supported, so MUST be refused.
    - ``response_mode``: only ``RESPONSE_MODES_SUPPORTED``. oauthlib would put the code in the fragment
      for ``fragment`` and silently use the query for anything else (Multiple Response Type Encoding
      Practices §2.1; OIDC Core §3.1.2.1); ``form_post`` is the view's (uaa/oauth/form_post.py).
    - ``prompt`` and ``max_age`` that UAA does not answer, an ``id_token_hint`` it did not issue
      (``Ask.parse``).

    PKCE is checked before, by the oauthlib server (uaa/oauth/server.py, rules in uaa/oauth/rfc7636.py), on
    the request and again when its code is created, with the scopes granted.
    """
    for parameter in NOT_SUPPORTED:
        if parameter in query:
            raise oauthlib_errors.CustomOAuth2Error(
                error=f"{parameter}_not_supported", description=f"The {parameter} parameter is not supported."
            )
    response_mode = query.get("response_mode")
    if response_mode and response_mode not in RESPONSE_MODES_SUPPORTED:
        raise oauthlib_errors.InvalidRequestError(description=RESPONSE_MODE_REFUSED)
    try:
        Ask.parse(query)
    except ValueError as refused:
        raise oauthlib_errors.InvalidRequestError(description=str(refused)) from None


def parse_prompt(value: str) -> frozenset[str]:
    """OIDC Core §3.1.2.1: "a space delimited, case sensitive list"; "If this parameter contains none with
    any other value, an error is returned". Values UAA does not support are refused, not ignored."""
    values = frozenset(part for part in value.split(" ") if part)
    if not values <= set(PROMPT_VALUES_SUPPORTED):
        raise ValueError(PROMPT_REFUSED)
    if "none" in values and len(values) > 1:
        raise ValueError(PROMPT_REFUSED)
    return values


def parse_max_age(value: object) -> int | None:
    """OIDC Core §3.1.2.1 ``max_age``: a non-negative integer number of seconds; ValueError otherwise."""
    if value is None:
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise ValueError(MAX_AGE_REFUSED)
    return int(text)


@dataclass(frozen=True)
class SessionState:
    """What the browser's session says about the user's authentication, for one request."""

    signed_in: bool
    auth_time: datetime | None
    acr: str
    reauthenticated: bool  # signed in after this request demanded it (see the module docstring)
    consented: bool = False  # the user allowed this request on its consent page, just now
    sub: str | None = None  # the signed-in user's


SIGNED_OUT = SessionState(signed_in=False, auth_time=None, acr="", reauthenticated=False)


@dataclass(frozen=True)
class ClientState:
    """What this user's use of this client requires, as the database says."""

    mfa_required: (
        bool  # the policy, the client's requires_mfa or the user's own factors (accounts.mfa.policy)
    )
    consent_on_record: bool  # the client is trusted, or the user already granted every requested scope


UNKNOWN_CLIENT_STATE = ClientState(mfa_required=False, consent_on_record=False)  # nobody is signed in


@dataclass(frozen=True)
class Decision:
    step: Step
    error: str | None = None  # prompt=none: redirect this error instead of showing a page
    # SIGN_IN for prompt=login or max_age: the session keeps the demand, so that only a sign-in after
    # now answers it (demand_reauthentication)
    demand_reauthentication: bool = False

    @property
    def interactive(self) -> bool:
        return self.step in (Step.SIGN_IN, Step.STEP_UP)


def decide(*, ask: Ask, session: SessionState, client: ClientState, now: datetime) -> Decision:
    """The next step of an authorization request, in OIDC Core's order: authenticate (§3.1.2.3: not
    signed in, ``prompt=login``, ``max_age``), then the requested strength (``acr_values``, the client's
    or the policy's second factor), then consent (§3.1.2.4: ``prompt=consent``, or nothing on record,
    unless the user has just answered this request's consent page).

    ``prompt=none`` turns every step but ``ISSUE`` into its error (§3.1.2.6), and demands nothing.

    An ``id_token_hint`` naming another user than the one signed in is ``login_required`` (§3.1.2.1, with
    or without ``prompt=none``) once the session is one the request accepts: a sign-in the request asks for
    comes first, so that "is logged in by the request" is checked against whoever signs in.
    """
    step = _step(ask=ask, session=session, client=client, now=now)
    if step is not Step.SIGN_IN and ask.hinted_sub is not None and ask.hinted_sub != session.sub:
        return Decision(step=Step.SIGN_IN, error=SILENT_ERRORS[Step.SIGN_IN])
    if "none" in ask.prompts and step is not Step.ISSUE:
        return Decision(step=step, error=SILENT_ERRORS[step])
    return Decision(step=step, demand_reauthentication=step is Step.SIGN_IN and ask.wants_fresh_sign_in)


def _step(*, ask: Ask, session: SessionState, client: ClientState, now: datetime) -> Step:
    if not session.signed_in or session.auth_time is None:
        return Step.SIGN_IN
    if "login" in ask.prompts and not session.reauthenticated:
        return Step.SIGN_IN
    if ask.max_age is not None and not session.reauthenticated:
        if (now - session.auth_time).total_seconds() > ask.max_age:
            return Step.SIGN_IN
    if not policy.satisfies(acr=session.acr, requested=ask.acr_values):
        return Step.STEP_UP
    if client.mfa_required and session.acr != policy.ACR_MFA:
        return Step.STEP_UP
    if session.consented:
        return Step.ISSUE
    if "consent" in ask.prompts or not client.consent_on_record:
        return Step.CONSENT
    return Step.ISSUE


def decide_request(
    request: HttpRequest,
    *,
    client: Client,
    scopes: list[str],
    ask: Ask,
    digest: str,
    consented: bool = False,
) -> Decision:
    """``decide`` with what this browser's session (accounts/sessions.py) and the database say about
    the request ``digest``; ``consented``: the user has just allowed it on its consent page."""
    if not request.user.is_authenticated:
        return decide(ask=ask, session=SIGNED_OUT, client=UNKNOWN_CLIENT_STATE, now=timezone.now())
    user = request.user
    signed_in_at = sessions.auth_time(request)
    session = SessionState(
        signed_in=True,
        auth_time=signed_in_at,
        acr=sessions.current_acr(request),
        reauthenticated=reauthenticated(request, digest=digest, auth_time=signed_in_at),
        consented=consented,
        sub=str(user.pk),
    )
    standing = ClientState(
        # a session with the second factor needs no look-up of the user's factors
        mfa_required=session.acr != policy.ACR_MFA and policy.mfa_required(user=user, client=client),
        consent_on_record=client.trusted
        or consent.covers(user=user, client_id=client.client_id, scopes=scopes),
    )
    return decide(ask=ask, session=session, client=standing, now=timezone.now())


# --- what the session keeps between the steps ------------------------------------------------------
def request_digest(query: QueryDict) -> str:
    """The authorization request, independent of parameter order: what a demand and a page are kept under."""
    pairs = sorted((key, value) for key, values in query.lists() for value in values)
    return hashlib.sha256(urlencode(pairs).encode("utf-8")).hexdigest()


def _kept(request: HttpRequest, name: str) -> dict[str, Any]:
    value = request.session.get(name)
    return dict(value) if isinstance(value, dict) else {}


def _keep(request: HttpRequest, name: str, entries: dict[str, Any]) -> None:
    # dicts keep insertion order: the oldest entries are first
    request.session[name] = dict(list(entries.items())[-KEPT:])


def demand_reauthentication(request: HttpRequest, *, digest: str, now: float | None = None) -> None:
    """The request ``digest`` needs a sign-in made after now; an earlier demand for it still stands."""
    now = time.time() if now is None else now
    demands = _kept(request, REAUTHENTICATION)
    since = demands.get(digest)
    if not isinstance(since, int | float) or now - since > REAUTHENTICATION_SECONDS:
        demands.pop(digest, None)
        demands[digest] = now
        _keep(request, REAUTHENTICATION, demands)


def reauthenticated(
    request: HttpRequest, *, digest: str, auth_time: datetime | None, now: float | None = None
) -> bool:
    """Whether the session's sign-in happened after the request ``digest`` demanded one, and recently."""
    since = _kept(request, REAUTHENTICATION).get(digest)
    if not isinstance(since, int | float) or auth_time is None:
        return False
    now = time.time() if now is None else now
    return since <= auth_time.timestamp() and now - since <= REAUTHENTICATION_SECONDS


def finish(request: HttpRequest, *, digest: str) -> None:
    """The request was answered (a code or an error): its demand is spent."""
    demands = _kept(request, REAUTHENTICATION)
    if demands.pop(digest, None) is not None:
        _keep(request, REAUTHENTICATION, demands)


def hold_consent(request: HttpRequest, *, page: dict[str, Any]) -> str:
    """Keep the request a consent page is shown for (JSON-serializable); returns the page's id."""
    page_id = secrets.token_urlsafe(16)
    pages = _kept(request, HELD_CONSENT)
    pages[page_id] = {**page, "shown_at": time.time()}
    _keep(request, HELD_CONSENT, pages)
    return page_id


def take_consent(request: HttpRequest, page_id: str) -> dict[str, Any] | None:
    """The request consent page ``page_id`` was shown for, once: a second answer finds nothing."""
    pages = _kept(request, HELD_CONSENT)
    page = pages.pop(page_id, None) if page_id else None
    if page is not None:
        _keep(request, HELD_CONSENT, pages)
    return page if isinstance(page, dict) else None


PAGE_GONE = (
    "This consent page has expired or was already answered. Go back to the application and start again."
)
OTHER_QUERY = "The consent form was posted to another request's address."


@dataclass(frozen=True)
class Answer:
    """A consent page's answer, checked against the request the page was shown for (``shown``): the scopes
    it grants, or why it answers nothing (``refused``: the request is finished, its error is to be sent)."""

    shown: dict[str, Any]
    client: Client
    scopes: list[str]
    refused: consent.AnswerRefused | None = None


def take_answer(request: HttpRequest, *, page_id: str, posted: Mapping[str, Any]) -> Answer:
    """The answer to consent page ``page_id`` (once: the page is taken), checked against the request the page
    was shown for, never against the form's copies (``consent.check_answer``). The form posts back to the
    page's own URL: another query is another request (``invalid_request``).

    Raises ``consent.AnswerRefused`` (fatal) for a page that is not held, or whose client is gone.
    """
    shown = take_consent(request, page_id)
    client = Client.objects.filter(client_id=shown["client_id"]).first() if shown else None
    if shown is None or client is None:
        raise consent.AnswerRefused("invalid_request", PAGE_GONE, fatal=True)
    digest = shown["digest"]
    try:
        if request.GET and request_digest(request.GET) != digest:
            raise consent.AnswerRefused("invalid_request", OTHER_QUERY)
        scopes = consent.check_answer(shown=shown, posted=posted)
    except consent.AnswerRefused as refused:
        finish(request, digest=digest)
        return Answer(shown=shown, client=client, scopes=[], refused=refused)
    return Answer(shown=shown, client=client, scopes=scopes)
