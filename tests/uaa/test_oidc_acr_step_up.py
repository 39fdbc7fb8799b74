"""Claims and step-up: acr/amr in tokens, acr_values and the client's "requires MFA" flag (OIDC Core §3.1.2.1,
§2; RFC 8176)."""

from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import LOGIN, MFA, REDIRECT_URI, sign_in
from tests.factories import PASSWORD, UserFactory, totp_code
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from tests.uaa.endpoints import verified
from uaa.oauth.models import AuthorizationCode

MFA_ACR = "urn:uaa:acr:mfa"
PWD_ACR = "urn:uaa:acr:pwd"
STEP_UP = "/accounts/mfa/step-up"


@pytest.fixture
def password_only_browser(settings, db):
    """Policy off: a user without a factor signs in with a password (acr pwd), then adds an app."""
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    http = HttpClient()
    assert http.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == "/accounts/"
    assert http.session["uaa_acr"] == PWD_ACR
    TOTPDevice.objects.create(user=user, name="app", confirmed=True, tolerance=1)
    return http, user


def tokens_for(http, registered, **params):
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    result = authorize(http, request, **params)
    response = exchange_code(HttpClient(), code=result["code"], request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    _, id_claims = verified(response.json()["id_token"])
    _, access_claims = verified(response.json()["access_token"])
    return id_claims, access_claims


def test_discovery_lists_the_acr_values(client, db):
    """OIDC Discovery §3: acr_values_supported lists the Authentication Context Class References."""
    document = client.get("/.well-known/openid-configuration").json()
    assert document["acr_values_supported"] == [PWD_ACR, MFA_ACR]
    assert {"acr", "amr"} <= set(document["claims_supported"])


def test_id_and_access_tokens_carry_amr_and_acr(browser, confidential_client):
    """RFC 8176 §2 amr values; acr names the class the session satisfied (OIDC Core §2)."""
    id_claims, access_claims = tokens_for(browser, confidential_client)
    for claims in (id_claims, access_claims):
        assert claims["amr"] == ["pwd", "otp", "mfa"]
        assert claims["acr"] == MFA_ACR


def test_acr_values_for_mfa_steps_a_password_session_up_to_the_second_factor(
    password_only_browser, confidential_client
):
    """OIDC Core §3.1.2.1 acr_values: the session does not satisfy it, so the factor is asked for first."""
    http, user = password_only_browser
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = http.get(request.url(acr_values=MFA_ACR))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(STEP_UP + "?next=")
    assert http.get(response["Location"])["Location"] == MFA
    resumed = http.post(MFA, {"method": "totp", "code": totp_code(user)})
    assert resumed["Location"] == request.url(acr_values=MFA_ACR)
    id_claims, access_claims = tokens_for(http, confidential_client, acr_values=MFA_ACR)
    assert id_claims["acr"] == access_claims["acr"] == MFA_ACR
    assert id_claims["amr"] == ["pwd", "otp", "mfa"]


def test_acr_values_with_prompt_none_and_a_weaker_session_is_login_required(
    password_only_browser, confidential_client
):
    """OIDC Core §3.1.2.6: the step-up would need interaction, which prompt=none forbids."""
    http, _user = password_only_browser
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = http.get(request.url(acr_values=MFA_ACR, prompt="none"))
    assert query_of(response["Location"])["error"] == "login_required"


def test_a_password_session_satisfies_a_request_for_pwd(password_only_browser, confidential_client):
    http, user = password_only_browser
    TOTPDevice.objects.filter(user=user).delete()  # no factor: the policy lets a password do
    id_claims, _ = tokens_for(http, confidential_client, acr_values=PWD_ACR)
    assert id_claims["acr"] == PWD_ACR
    assert id_claims["amr"] == ["pwd"]


def test_unknown_acr_values_are_voluntary_and_ignored(password_only_browser, confidential_client):
    """OIDC Core §5.5.1.1: acr requested as a voluntary claim; the OP need not refuse what it cannot meet."""
    http, user = password_only_browser
    TOTPDevice.objects.filter(user=user).delete()  # no factor: the policy lets a password do
    id_claims, _ = tokens_for(http, confidential_client, acr_values="urn:example:loa:4")
    assert id_claims["acr"] == PWD_ACR


def test_a_client_flagged_requires_mfa_gets_a_second_factor_even_with_policy_off(
    password_only_browser, client_factory
):
    http, user = password_only_browser
    strict = client_factory(name="Payroll", requires_mfa=True)
    request = AuthorizationRequest(client_id=strict.client_id, redirect_uri=REDIRECT_URI)
    response = http.get(request.url())
    assert response["Location"].startswith(STEP_UP)
    http.get(response["Location"])
    http.post(MFA, {"method": "totp", "code": totp_code(user)})
    id_claims, _ = tokens_for(http, strict)
    assert id_claims["acr"] == MFA_ACR


def test_consent_posted_straight_from_a_password_session_is_refused(password_only_browser, client_factory):
    """The GET would have asked for the factor; a forged POST (no consent page was shown for it) gets the
    error page, not a code (tests/uaa/test_oidc_consent_answer.py checks a shown page's answer too)."""
    http, _user = password_only_browser
    strict = client_factory(name="Payroll", requires_mfa=True)
    request = AuthorizationRequest(client_id=strict.client_id, redirect_uri=REDIRECT_URI)
    data = {
        "client_id": strict.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": request.state,
        "nonce": request.nonce,
        "code_challenge": request.challenge,
        "code_challenge_method": "S256",
        "allow": "Authorize",
    }
    response = http.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert not AuthorizationCode.objects.exists()


def test_a_user_without_a_factor_asked_for_mfa_enrolls_first(settings, db, confidential_client):
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    step_up = http.get(request.url(acr_values=MFA_ACR))["Location"]
    assert http.get(step_up)["Location"] == "/accounts/mfa/enroll"


def test_max_age_zero_with_acr_values_asks_for_password_and_factor_again(browser, user, confidential_client):
    """OIDC Core §3.1.2.1 max_age=0: a fresh sign-in, with the second factor again."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(max_age="0", acr_values=MFA_ACR))
    assert response["Location"].startswith(LOGIN)
    password = browser.post(response["Location"], {"email": user.email, "password": PASSWORD})
    assert password["Location"] == MFA
    done = sign_in(browser, user)
    assert done.status_code == HTTPStatus.FOUND
    assert browser.session["uaa_amr"] == ["pwd", "otp", "mfa"]
