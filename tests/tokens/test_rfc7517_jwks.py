"""RFC 7517 JSON Web Key Set at /.well-known/jwks.json: public members only, cacheable, self-healing."""

from datetime import UTC, datetime
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post, verify_with_jwks
from tests.tokens.test_keys import rfc7638_thumbprint
from tokens.keys import create_signing_key
from tokens.models import SigningKey

JWKS = "/.well-known/jwks.json"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
def published(db):
    """One active key per algorithm, and a next RS256 key."""
    keys = [
        create_signing_key(algorithm=a, now=T0, state=SigningKey.State.ACTIVE)
        for a in ("RS256", "ES256", "EdDSA")
    ]
    keys.append(create_signing_key(algorithm="RS256", now=T0))
    return keys


def test_jwks_publishes_next_and_active_keys(client, published):
    """RFC 7517 §5: the set holds every key a verifier may meet, including the one about to sign."""
    document = client.get(JWKS).json()
    assert set(document) == {"keys"}
    assert {key["kid"] for key in document["keys"]} == {key.kid for key in published}


def test_jwks_never_publishes_private_members(client, published):
    """RFC 7517 §9.2 / RFC 7518 §6: private key members MUST NOT be published."""
    for key in client.get(JWKS).json()["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key
        assert {"kty", "kid", "alg", "use"} <= set(key)
        assert key["use"] == "sig"


def test_private_members_that_slipped_into_a_row_are_still_not_published(client, published):
    """RFC 7517 §9.2: whatever is stored, the published set is filtered to public members."""
    key = published[0]
    key.public_jwk = {
        **key.public_jwk,
        "d": "c2VjcmV0",
        "p": "c2VjcmV0",
        "k": "c2VjcmV0",
        "x5u": "https://evil/",
    }
    key.save()
    for member in client.get(JWKS).json()["keys"]:
        assert not PRIVATE_MEMBERS & set(member)
        assert "x5u" not in member


def test_every_published_kid_is_the_thumbprint_of_the_published_key(client, published):
    """RFC 7638 §3: a verifier can recompute each kid from the key it names."""
    keys = client.get(JWKS).json()["keys"]
    assert len({key["kid"] for key in keys}) == len(keys)
    for key in keys:
        assert key["kid"] == rfc7638_thumbprint(key)


def test_retired_keys_stay_published_and_expired_or_revoked_keys_do_not(client, db):
    """DESIGN (keys): retired keys are published until their tokens expire; expired/revoked never."""
    states = [SigningKey.State.RETIRED, SigningKey.State.EXPIRED, SigningKey.State.REVOKED]
    keys = {state: create_signing_key(algorithm="ES256", now=T0, state=state) for state in states}
    kids = {key["kid"] for key in client.get(JWKS).json()["keys"]}
    assert keys[SigningKey.State.RETIRED].kid in kids
    assert keys[SigningKey.State.EXPIRED].kid not in kids
    assert keys[SigningKey.State.REVOKED].kid not in kids


def test_jwks_has_the_jwk_set_media_type(client, published):
    """RFC 7517 §8.5.1: application/jwk-set+json."""
    assert client.get(JWKS)["Content-Type"] == "application/jwk-set+json"


def test_jwks_is_publicly_cacheable_for_the_configured_time(client, published, settings):
    """RFC 9111 §5.2.2: resource servers and proxies may cache the set for UAA_JWKS_MAX_AGE seconds."""
    response = client.get(JWKS)
    assert response["Cache-Control"] == f"public, max-age={settings.UAA_JWKS_MAX_AGE}"
    assert response["Access-Control-Allow-Origin"] == "*"


def test_if_none_match_with_the_current_etag_gives_304(client, published, settings):
    """RFC 9110 §13.1.2: a matching If-None-Match gets 304 with the ETag and caching headers again."""
    first = client.get(JWKS)
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get(JWKS, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == HTTPStatus.NOT_MODIFIED
    assert again.content == b""
    assert again["ETag"] == etag
    assert again["Cache-Control"] == f"public, max-age={settings.UAA_JWKS_MAX_AGE}"


@pytest.mark.parametrize("header", ['"stale", {etag}', "W/{etag}", "*"])
def test_if_none_match_uses_the_weak_comparison(client, published, header):
    """RFC 9110 §13.1.2: If-None-Match compares weakly (W/ is ignored), takes a list, and * matches."""
    etag = client.get(JWKS)["ETag"]
    response = client.get(JWKS, HTTP_IF_NONE_MATCH=header.format(etag=etag))
    assert response.status_code == HTTPStatus.NOT_MODIFIED


def test_a_stale_etag_gets_the_full_set(client, published):
    """RFC 9110 §13.1.2: a non-matching If-None-Match is answered in full."""
    response = client.get(JWKS, HTTP_IF_NONE_MATCH='"not-the-current-one"')
    assert response.status_code == HTTPStatus.OK
    assert response.json()["keys"]


def test_the_etag_changes_when_the_key_set_changes(client, published):
    """RFC 9110 §8.8.3: a new key is a new representation, so cached copies are revalidated."""
    before = client.get(JWKS)["ETag"]
    create_signing_key(algorithm="ES256", now=T0)
    response = client.get(JWKS, HTTP_IF_NONE_MATCH=before)
    assert response.status_code == HTTPStatus.OK
    assert response["ETag"] != before


def test_head_is_answered_like_get(client, published):
    """RFC 9110 §9.3.2: HEAD is GET without the content (monitoring and caches use it)."""
    response = client.head(JWKS)
    assert response.status_code == HTTPStatus.OK
    assert response["ETag"] == client.get(JWKS)["ETag"]
    assert response.content == b""


def test_jwks_refuses_post(client, published):
    """RFC 7517 §5: the set is fetched, never written."""
    assert client.post(JWKS).status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_an_empty_key_table_heals_itself_on_the_first_jwks_request(client, db):
    """DESIGN (keys): a fresh database publishes exactly one active RS256 key (OIDC Core §15.1)."""
    assert not SigningKey.objects.exists()
    keys = client.get(JWKS).json()["keys"]
    active = SigningKey.objects.active()
    assert active.for_algorithm("RS256").count() == 1
    assert {key["kid"] for key in keys} >= set(active.values_list("kid", flat=True))
    client.get(JWKS)
    assert SigningKey.objects.active().for_algorithm("RS256").count() == 1  # and only once


def test_an_empty_key_table_heals_itself_on_the_first_token_request(service_client, settings):
    """DESIGN (keys): the first token request finds no key, creates one active key of the access tokens'
    algorithm (UAA_ACCESS_TOKEN_ALG) and signs."""
    algorithm = settings.UAA_ACCESS_TOKEN_ALG
    assert not SigningKey.objects.exists()
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert SigningKey.objects.active().for_algorithm(algorithm).count() == 1
    jwks = HttpClient().get(JWKS).json()
    header, _ = verify_with_jwks(response.json()["access_token"], jwks)
    assert header["kid"] == SigningKey.objects.active().for_algorithm(algorithm).get().kid
    assert SigningKey.objects.active().for_algorithm(algorithm).count() == 1


@pytest.mark.parametrize(("algorithm", "kty"), [("ES256", "EC"), ("EdDSA", "OKP"), ("RS256", "RSA")])
def test_id_tokens_are_signed_with_the_clients_algorithm_and_verify_against_the_jwks(
    browser, client_factory, algorithm, kty, settings
):
    """OIDC Registration §2 id_token_signed_response_alg; OIDC Core §10.1: verifiable with the OP's JWKS."""
    registered = client_factory(name=f"{algorithm} RP", algorithm=algorithm)
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    params = authorize(browser, request)
    response = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    tokens = response.json()
    jwks = HttpClient().get(JWKS).json()
    header, claims = verify_with_jwks(tokens["id_token"], jwks)
    assert header["alg"] == algorithm
    published = next(key for key in jwks["keys"] if key["kid"] == header["kid"])
    assert published["kty"] == kty
    assert published["alg"] == algorithm
    assert claims["aud"] == registered.client_id
    assert claims["iss"] == settings.UAA_ISSUER
    access_header, _ = verify_with_jwks(tokens["access_token"], jwks)
    assert access_header["alg"] == settings.UAA_ACCESS_TOKEN_ALG  # access tokens keep the server's algorithm
