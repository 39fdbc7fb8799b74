"""The authorization endpoint's decision as a table: session state, client and request → step.

``uaa.oauth.interaction.decide`` is a pure function (no request, no database), so every row is one call.
The endpoint tests (test_oidc_authorization.py, test_oidc_prompt_values.py, test_oidc_reauthentication.py,
test_oidc_acr_step_up.py, test_oidc_consent_answer.py) drive the same decision through the browser.
Rows cite OIDC Core 1.0 §3.1.2.1 (prompt, max_age, acr_values), §3.1.2.3 (authentication), §3.1.2.4
(consent) and §3.1.2.6 (the prompt=none errors).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from accounts.mfa.policy import ACR_MFA, ACR_PWD
from uaa.oauth.interaction import (
    SIGNED_OUT,
    Ask,
    ClientState,
    Decision,
    SessionState,
    Step,
    check_request,
    decide,
    parse_max_age,
    parse_prompt,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def signed_in(
    *, acr: str = ACR_MFA, ago: int = 60, reauthenticated: bool = False, consented: bool = False
) -> SessionState:
    return SessionState(
        signed_in=True,
        auth_time=NOW - timedelta(seconds=ago),
        acr=acr,
        reauthenticated=reauthenticated,
        consented=consented,
    )


def ask(prompt: str = "", max_age: str | None = None, acr_values: str = "") -> Ask:
    query = {"prompt": prompt, "acr_values": acr_values}
    if max_age is not None:
        query["max_age"] = max_age
    return Ask.parse(query)


KNOWN = ClientState(mfa_required=False, consent_on_record=True)  # consent on record (or trusted)
NEW = ClientState(mfa_required=False, consent_on_record=False)  # nothing granted yet
STRICT = ClientState(mfa_required=True, consent_on_record=True)  # requires_mfa, the policy or own factors

SIGN_IN = Decision(step=Step.SIGN_IN)
FRESH_SIGN_IN = Decision(step=Step.SIGN_IN, demand_reauthentication=True)
STEP_UP = Decision(step=Step.STEP_UP)
CONSENT = Decision(step=Step.CONSENT)
ISSUE = Decision(step=Step.ISSUE)
LOGIN_REQUIRED_SIGN_IN = Decision(step=Step.SIGN_IN, error="login_required")
LOGIN_REQUIRED_STEP_UP = Decision(step=Step.STEP_UP, error="login_required")
CONSENT_REQUIRED = Decision(step=Step.CONSENT, error="consent_required")

TABLE = [
    # (why, session, client, request, decision)
    ("§3.1.2.3: not signed in, so authenticate", SIGNED_OUT, KNOWN, ask(), SIGN_IN),
    ("§3.1.2.6: not signed in, prompt=none", SIGNED_OUT, KNOWN, ask("none"), LOGIN_REQUIRED_SIGN_IN),
    ("§3.1.2.1: not signed in, prompt=login: the sign-in must follow the demand", SIGNED_OUT, KNOWN,
     ask("login"), FRESH_SIGN_IN),
    ("§3.1.2.1: not signed in, max_age: the sign-in must follow the demand", SIGNED_OUT, KNOWN,
     ask(max_age="300"), FRESH_SIGN_IN),
    ("§3.1.2.3: signed in with consent on record: nothing left to ask", signed_in(), KNOWN, ask(), ISSUE),
    ("§3.1.2.6: signed in with consent on record, prompt=none", signed_in(), KNOWN, ask("none"), ISSUE),
    ("§3.1.2.1 prompt=login: an earlier sign-in does not count", signed_in(), KNOWN, ask("login"),
     FRESH_SIGN_IN),
    ("§3.1.2.1 prompt=login: a sign-in after the demand answers it", signed_in(reauthenticated=True), KNOWN,
     ask("login"), ISSUE),
    ("§3.1.2.1 max_age: a sign-in within it is enough", signed_in(ago=60), KNOWN, ask(max_age="300"), ISSUE),
    ("§3.1.2.1 max_age: an older sign-in must be repeated", signed_in(ago=600), KNOWN, ask(max_age="300"),
     FRESH_SIGN_IN),
    ("§3.1.2.1 max_age=0: only a sign-in made for this request", signed_in(ago=1), KNOWN, ask(max_age="0"),
     FRESH_SIGN_IN),
    ("§3.1.2.1 max_age=0: the sign-in made for this request answers it",
     signed_in(ago=1, reauthenticated=True), KNOWN, ask(max_age="0"), ISSUE),
    ("§3.1.2.6 max_age exceeded with prompt=none: the error, no demand", signed_in(ago=600), KNOWN,
     ask("none", max_age="300"), LOGIN_REQUIRED_SIGN_IN),
    ("§3.1.2.1 acr_values: a password session falls short of the MFA class", signed_in(acr=ACR_PWD), KNOWN,
     ask(acr_values=ACR_MFA), STEP_UP),
    ("§3.1.2.1 acr_values: the MFA class is met", signed_in(acr=ACR_MFA), KNOWN, ask(acr_values=ACR_MFA),
     ISSUE),
    ("§3.1.2.1 acr_values: either class of the list is enough", signed_in(acr=ACR_PWD), KNOWN,
     ask(acr_values=f"{ACR_MFA} {ACR_PWD}"), ISSUE),
    ("§3.1.2.1 acr_values: classes UAA does not know are voluntary", signed_in(acr=ACR_PWD), KNOWN,
     ask(acr_values="urn:example:gold"), ISSUE),
    ("§3.1.2.6 acr_values with prompt=none: a step-up is authentication", signed_in(acr=ACR_PWD), KNOWN,
     ask("none", acr_values=ACR_MFA), LOGIN_REQUIRED_STEP_UP),
    ("the client or policy requires a second factor the session lacks", signed_in(acr=ACR_PWD), STRICT,
     ask(), STEP_UP),
    ("the client or policy requires a second factor the session has", signed_in(acr=ACR_MFA), STRICT, ask(),
     ISSUE),
    ("§3.1.2.3 before §3.1.2.4: a stale session signs in before any step-up", signed_in(acr=ACR_PWD, ago=600),
     STRICT, ask(max_age="300"), FRESH_SIGN_IN),
    ("§3.1.2.4: nothing on record, so ask", signed_in(), NEW, ask(), CONSENT),
    ("§3.1.2.6: nothing on record, prompt=none", signed_in(), NEW, ask("none"), CONSENT_REQUIRED),
    ("§3.1.2.1 prompt=consent: ask although consent is on record", signed_in(), KNOWN, ask("consent"),
     CONSENT),
    ("§3.1.2.4: the consent page was just answered with allow", signed_in(consented=True), NEW, ask(), ISSUE),
    ("§3.1.2.1 prompt=consent: the answer to this request's page is the consent",
     signed_in(consented=True), KNOWN, ask("consent"), ISSUE),
    ("§3.1.2.1 prompt=login consent: sign in first", signed_in(), KNOWN, ask("login consent"), FRESH_SIGN_IN),
    ("§3.1.2.1 prompt=login consent: then consent", signed_in(reauthenticated=True), KNOWN,
     ask("login consent"), CONSENT),
    ("a consent answer does not stand in for the second factor", signed_in(acr=ACR_PWD, consented=True),
     STRICT, ask(), STEP_UP),
    ("a consent answer does not stand in for prompt=login", signed_in(consented=True), NEW, ask("login"),
     FRESH_SIGN_IN),
]  # fmt: skip


@pytest.mark.parametrize(
    ("session", "client", "request_asks", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decide(session, client, request_asks, expected):
    """OIDC Core §3.1.2.1 to §3.1.2.6: the next step for this session, client and request."""
    assert decide(ask=request_asks, session=session, client=client, now=NOW) == expected


def test_a_decision_with_an_error_is_never_an_interaction_demand():
    """OIDC Core §3.1.2.6: prompt=none "MUST NOT display any authentication or consent user interface
    pages", so no sign-in is demanded for the request either."""
    for _, session, client, request_asks, _ in TABLE:
        decision = decide(ask=request_asks, session=session, client=client, now=NOW)
        assert not (decision.error and decision.demand_reauthentication)
        assert decision.error is None or "none" in request_asks.prompts


@pytest.mark.parametrize(
    "value", ["select_account", "create", "CONSENT", "Login", "none login", "none consent", "login,consent"]
)
def test_prompt_values_uaa_does_not_answer_are_refused(value):
    """OIDC Core §3.1.2.1: prompt is "a space delimited, case sensitive list"; "If this parameter contains
    none with any other value, an error is returned"."""
    with pytest.raises(ValueError, match="prompt"):
        parse_prompt(value)


@pytest.mark.parametrize(("value", "expected"), [("", frozenset()), ("login  consent", {"login", "consent"})])
def test_prompt_values_are_a_space_delimited_set(value, expected):
    """OIDC Core §3.1.2.1: "a space delimited, case sensitive list of ASCII string values"."""
    assert parse_prompt(value) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "1e3", "١٢"])
def test_max_age_is_whole_seconds(value):
    """OIDC Core §3.1.2.1: max_age is the "allowable elapsed time in seconds"; anything else is refused."""
    with pytest.raises(ValueError, match="max_age"):
        parse_max_age(value)


PKCE = {"code_challenge_method": "S256", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"response_mode": "query"},
        {"response_mode": "form_post"},  # OAuth 2.0 Form Post Response Mode (uaa/oauth/form_post.py)
        {"prompt": "login consent", "max_age": "0", "acr_values": "x"},
    ],
)
def test_a_request_uaa_answers_is_not_refused(query):
    check_request(query, credentials=PKCE)


@pytest.mark.parametrize(
    ("query", "credentials", "error", "description"),
    [
        # OIDC Core §6.1, §6.2: request and request_uri are not supported, so MUST be refused.
        ({"request": "x"}, PKCE, "request_not_supported", "request parameter"),
        ({"request_uri": "x"}, PKCE, "request_uri_not_supported", "request_uri parameter"),
        # Multiple Response Type Encoding Practices §2.1: never the fragment for the code flow; the query
        # and form_post are the response modes UAA uses.
        ({"response_mode": "fragment"}, PKCE, "invalid_request", "response_mode"),
        ({"response_mode": "form_post.jwt"}, PKCE, "invalid_request", "response_mode"),
        # PKCE is the server's check (uaa/oauth/server.py): tests/uaa/test_pkce_policy.py.
        # OIDC Core §3.1.2.1: prompt and max_age that UAA does not answer.
        ({"prompt": "select_account"}, PKCE, "invalid_request", "prompt"),
        ({"max_age": "soon"}, PKCE, "invalid_request", "max_age"),
    ],
)
def test_a_request_uaa_does_not_answer_is_refused_with_the_error_to_redirect(
    query, credentials, error, description
):
    with pytest.raises(oauthlib_errors.OAuth2Error) as refused:
        check_request(query, credentials=credentials)
    assert refused.value.error == error
    assert description in refused.value.description
