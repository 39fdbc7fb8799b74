from http import HTTPStatus

from django.test import Client as HttpClient

from tests.oauth_client import verify_with_jwks


def test_code_flow_issues_tokens_verifiable_against_the_jwks(code_flow, confidential_client, user):
    result = code_flow(confidential_client)
    tokens = result["tokens"]
    assert result["params"]["iss"] == "http://testserver"
    assert result["params"]["state"] == result["request"].state
    jwks = HttpClient().get("/.well-known/jwks.json").json()
    header, claims = verify_with_jwks(tokens["access_token"], jwks)
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == str(user.pk)
    _, id_claims = verify_with_jwks(tokens["id_token"], jwks)
    assert id_claims["nonce"] == result["request"].nonce
    assert id_claims["aud"] == confidential_client.client_id
    info = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert info.status_code == HTTPStatus.OK, info.content
    assert info.json()["email"] == user.email
