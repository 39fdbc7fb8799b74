"""The conformance suite's relying party, in Python, against a live UAA (gunicorn, docker-compose.yml's web
command).

The OpenID Foundation's conformance suite (gitlab.com/openid/conformance-suite; read at its GitHub mirror
openid-certification/conformance-suite, commit 12f2a4da) drives a browser through the authorization
endpoint and checks every answer with its ``Condition`` classes. This module is the same relying party:
``Browser`` is the user agent (a cookie jar that signs in and answers the consent page as the tester
would), ``RP`` the suite's client (static registration, ``client_secret_basic`` or ``client_secret_post``),
and the ``check_*`` functions are the suite's conditions, each named after the one it follows:

- ``check_callback``: ``CheckMatchingCallbackParameters``, ``ValidateIssIfPresentInAuthorizationResponse``
  (RFC 9207), ``CheckStateInAuthorizationResponse``; for Form Post ``CheckCallbackHttpMethodIsPost``,
  ``CheckCallbackContentTypeIsFormUrlEncoded``, ``RejectAuthCodeInUrlQuery``, ``RejectErrorInUrlQuery``.
- ``check_id_token``: ``PerformStandardIdTokenChecks`` (``ValidateIdToken``: iss, aud, exp, iat, auth_time;
  ``ValidateIdTokenNonce``, ``ValidateIdTokenACRClaimAgainstRequest``, ``ValidateIdTokenSignature`` against
  the
  JWKS, ``CheckForSubjectInIdToken``, ``EnsureIdTokenUpdatedAtValid``) with ``CheckForKeyIdInServerJWKs``,
  ``ValidateAtHash`` when ``at_hash`` is present.
- ``check_error_callback``: ``performGenericAuthorizationEndpointErrorResponseValidation`` (state, iss, an
  error, no code, no unexpected parameters, error_description of RFC 6749's characters).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import jwt
import requests

REDIRECT_URI = "https://rp.conformance.example/callback"
REDIRECT_URI_WITH_QUERY = f"{REDIRECT_URI}?bar=foo"  # AddQueryToRedirectUri
# RFC 6749 §4.1.2.1: error_description is %x20-21 / %x23-5B / %x5D-7E
ERROR_DESCRIPTION = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")
# OIDC Core §3.1.2.6 + RFC 6749 §4.1.2.1: what an error response may carry
ERROR_PARAMETERS = {"error", "error_description", "error_uri", "state", "iss"}


# --- HTML: the pages a tester sees ------------------------------------------------------------------------
@dataclass
class Form:
    attrs: dict[str, str]
    inputs: list[dict[str, str]] = field(default_factory=list)

    def fields(self) -> dict[str, str]:
        return {
            i["name"]: i.get("value", "") for i in self.inputs if i.get("name") and i.get("type") != "submit"
        }

    def input(self, name: str) -> dict[str, str] | None:
        return next((i for i in self.inputs if i.get("name") == name), None)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values))
        elif tag in ("input", "button") and self.forms:
            self.forms[-1].inputs.append({"type": "submit" if tag == "button" else "text", **values})


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


# --- the user agent ----------------------------------------------------------------------------------------
@dataclass
class Callback:
    """What reached the redirect URI: by redirect (query) or by a posted form (Form Post)."""

    method: str
    url: str
    content_type: str
    params: dict[str, str]
    pages: list[str]  # the OP's pages on the way: "login", "consent"

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))


@dataclass
class ErrorPage:
    """The OP's own error page: it did not send the browser to the relying party."""

    status: int
    html: str
    pages: list[str]


class Browser:
    """A cookie jar that follows the OP's redirects, signs in as ``user`` and answers consent as a tester."""

    def __init__(self, base: str, *, user: dict[str, str] | None = None, consent: bool = True) -> None:
        self.base = base
        self.session = requests.Session()
        self.user = user
        self.consent = consent
        self.login_pages: list[Form] = []

    def open(
        self, url: str, *, method: str = "GET", data: dict[str, str] | None = None
    ) -> Callback | ErrorPage:
        pages: list[str] = []
        response = self.session.request(method, url, data=data, allow_redirects=False, timeout=20)
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(response.url, response.headers["Location"])
                if location.startswith(REDIRECT_URI):
                    return Callback("GET", location, "", dict(parse_qsl(urlsplit(location).query)), pages)
                assert location.startswith(self.base), f"the OP sent the browser to {location}"
                method = "GET" if response.status_code in (301, 302, 303) else method
                response = self.session.request(method, location, allow_redirects=False, timeout=20)
                continue
            html = response.text
            found = forms(html)
            by_id = {f.attrs.get("id"): f for f in found}
            login = next((f for f in found if f.attrs.get("action", "").endswith("/accounts/login")), None)
            if response.status_code == 200 and "form-post" in by_id:
                post = by_id["form-post"]
                assert post.attrs["method"] == "post"
                return Callback(
                    "POST", post.attrs["action"], "application/x-www-form-urlencoded", post.fields(), pages
                )
            if response.status_code == 200 and login is not None and self.user is not None:
                pages.append("login")
                self.login_pages.append(login)
                answer = {**login.fields(), "email": self.user["email"], "password": self.user["password"]}
                response = self.session.post(
                    urljoin(response.url, login.attrs["action"]),
                    data=answer,
                    allow_redirects=False,
                    timeout=20,
                )
                continue
            if response.status_code == 200 and "consent" in by_id:
                pages.append("consent")
                answer = by_id["consent"].fields()
                if self.consent:
                    answer["allow"] = "Authorize"
                response = self.session.post(response.url, data=answer, allow_redirects=False, timeout=20)
                continue
            return ErrorPage(response.status_code, html, pages)
        raise AssertionError("the OP redirected the browser more than 20 times")

    def sign_out(self) -> None:
        self.session.cookies.clear()


# --- the relying party ------------------------------------------------------------------------------------
@dataclass
class RP:
    """The suite's statically registered client and what it learnt from discovery
    (``GetDynamicServerConfiguration``)."""

    client_id: str
    client_secret: str
    config: dict[str, Any]
    jwks: dict[str, Any]
    auth: str = "client_secret_basic"
    # the redirect URI its requests name (CreateRedirectUri, AddQueryToRedirectUri)
    redirect_uri: str = REDIRECT_URI

    def authorization_request(self, *, form_post: bool, nonce: bool = True, **extra: Any) -> dict[str, str]:
        """``CreateAuthorizationEndpointRequestFromClientInformation`` with a random state and nonce
        (``CreateRandomStateValue``, ``CreateRandomNonceValue``) and response_type=code, and
        ``SetAuthorizationEndpointRequestResponseModeToFormPost`` for the Form Post plan."""
        request = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": secrets.token_urlsafe(16),
            "response_type": "code",
        }
        if nonce:
            request["nonce"] = secrets.token_urlsafe(16)
        if form_post:
            request["response_mode"] = "form_post"
        request.update(extra)
        return {name: value for name, value in request.items() if value is not None}

    def url(self, request: dict[str, str]) -> str:
        """``BuildPlainRedirectToAuthorizationEndpoint``."""
        return f"{self.config['authorization_endpoint']}?{urlencode(request)}"

    def token(self, form: dict[str, str]) -> requests.Response:
        """``CallTokenEndpointAndReturnFullResponse`` with ``AddBasicAuthClientSecretToRequest`` or
        ``AddFormBasedClientSecretToRequest``."""
        if self.auth == "client_secret_post":
            return requests.post(
                self.config["token_endpoint"],
                data={**form, "client_id": self.client_id, "client_secret": self.client_secret},
                timeout=20,
            )
        return requests.post(
            self.config["token_endpoint"], data=form, auth=(self.client_id, self.client_secret), timeout=20
        )

    def exchange(self, code: str) -> requests.Response:
        """``CreateTokenEndpointRequestForAuthorizationCodeGrant``."""
        return self.token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        )

    def userinfo(self, access_token: str, *, how: str = "get") -> requests.Response:
        """``CallUserInfoEndpoint`` (GET, or POST with ``SetResourceMethodToPost``) and
        ``CallUserInfoEndpointWithBearerTokenInBody``."""
        endpoint = self.config["userinfo_endpoint"]
        header = {"Authorization": f"Bearer {access_token}"}
        if how == "get":
            return requests.get(endpoint, headers=header, timeout=20)
        if how == "post-header":
            return requests.post(endpoint, headers=header, timeout=20)
        return requests.post(endpoint, data={"access_token": access_token}, timeout=20)


# --- the suite's conditions --------------------------------------------------------------------------------
def check_callback(callback: Callback | ErrorPage, request: dict[str, str], rp: RP) -> dict[str, str]:
    """The authorization response reached the redirect URI, by the response mode asked for, with the
    request's ``state`` and the issuer's ``iss``; its parameters."""
    assert isinstance(callback, Callback), (
        f"the OP showed a page instead: {callback.status} {callback.html[:500]}"
    )
    assert callback.url.split("?")[0] == REDIRECT_URI  # CheckMatchingCallbackParameters
    registered_query = dict(parse_qsl(urlsplit(rp.redirect_uri).query))
    assert registered_query.items() <= callback.query.items()  # the registered URI's own query is kept
    if request.get("response_mode") == "form_post":
        assert callback.method == "POST"  # CheckCallbackHttpMethodIsPost (OAuth2-FP-2)
        assert (
            callback.content_type == "application/x-www-form-urlencoded"
        )  # CheckCallbackContentTypeIsFormUrlEncoded
        assert "code" not in callback.query  # RejectAuthCodeInUrlQuery
        assert "error" not in callback.query  # RejectErrorInUrlQuery
    else:
        assert callback.method == "GET"
    params = callback.params
    if "iss" in params:  # ValidateIssIfPresentInAuthorizationResponse (RFC 9207 §2.4)
        assert params["iss"] == rp.config["issuer"]
    assert params.get("state") == request["state"]  # CheckStateInAuthorizationResponse
    return params


def check_success_callback(callback: Callback | ErrorPage, request: dict[str, str], rp: RP) -> str:
    """``CheckIfAuthorizationEndpointError`` (stops the test), then
    ``ExtractAuthorizationCodeFromAuthorizationResponse``;
    ``EnsureMinimumAuthorizationCodeLength`` (22) and a code of unreserved characters."""
    params = check_callback(callback, request, rp)
    assert "error" not in params, params
    code = params["code"]
    assert len(code) >= 22 and re.fullmatch(r"[\x20-\x7e]+", code)
    return code


def check_error_callback(callback: Callback | ErrorPage, request: dict[str, str], rp: RP) -> dict[str, str]:
    """``performGenericAuthorizationEndpointErrorResponseValidation``."""
    params = check_callback(callback, request, rp)
    assert "error" in params  # EnsureErrorFromAuthorizationEndpointResponse
    assert "code" not in params  # RejectAuthCodeInAuthorizationEndpointResponse
    assert set(params) <= ERROR_PARAMETERS, (
        params
    )  # CheckForUnexpectedParametersInErrorResponseFromAuthorizationEndpoint
    # ValidateErrorFromAuthorizationEndpointResponseError / ValidateErrorDescription...: RFC 6749 §4.1.2.1's
    # characters
    assert re.fullmatch(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+", params["error"])
    assert ERROR_DESCRIPTION.fullmatch(params.get("error_description", ""))
    return params


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_id_token(
    token_response: dict[str, Any], rp: RP, request: dict[str, str], *, now: float | None = None
) -> dict[str, Any]:
    """``ExtractIdTokenFromTokenResponse`` and ``PerformStandardIdTokenChecks``; the verified claims."""
    id_token = token_response["id_token"]
    header = jwt.get_unverified_header(id_token)
    kid = header.get("kid")
    keys = {key.get("kid"): key for key in rp.jwks["keys"]}
    assert kid in keys  # CheckForKeyIdInServerJWKs / EnsureIdTokenContainsKid (OIDCC-10.1)
    jwk = keys[kid]
    assert header["alg"] == jwk["alg"] and header["alg"] in rp.config["id_token_signing_alg_values_supported"]
    # ValidateIdTokenSignature: against the published key, by that key's algorithm
    claims = jwt.decode(
        id_token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        options={"verify_aud": False, "verify_iss": False, "verify_exp": False, "verify_iat": False},
    )
    now = time.time() if now is None else now
    # ValidateIdToken (OIDCC-3.1.3.7)
    assert claims["iss"] == rp.config["issuer"]
    aud = claims["aud"]
    assert rp.client_id == aud or (isinstance(aud, list) and rp.client_id in aud)
    if isinstance(aud, list) and len(aud) > 1:
        assert claims.get("azp") == rp.client_id
    assert isinstance(claims["exp"], int) and now < claims["exp"] < now + 50 * 365 * 86400
    assert isinstance(claims["iat"], int) and now - 300 <= claims["iat"] <= now + 5
    if "auth_time" in claims:
        assert now - 365 * 86400 <= claims["auth_time"] <= now + 5
    if "acr" in claims:
        assert claims["acr"] != ""
    # ValidateIdTokenNonce (OIDCC-2): the request's nonce, and none when the request had none
    assert claims.get("nonce") == request.get("nonce")
    # CheckForSubjectInIdToken
    assert isinstance(claims["sub"], str) and 0 < len(claims["sub"]) <= 255
    # EnsureIdTokenUpdatedAtValid
    if "updated_at" in claims:
        assert isinstance(claims["updated_at"], int)
    # ValidateAtHash (OIDCC-3.3.2.11): left half of the hash of the access token, by the header's alg
    if "at_hash" in claims:
        digest = hashlib.new(
            {"256": "sha256", "384": "sha384", "512": "sha512"}.get(jwk["alg"][-3:], "sha512")
        )
        if jwk["alg"] == "EdDSA":
            digest = hashlib.sha512()
        digest.update(token_response["access_token"].encode())
        assert claims["at_hash"] == _b64(digest.digest()[: digest.digest_size // 2])
    return claims


def check_token_response(response: requests.Response) -> dict[str, Any]:
    """``CheckTokenEndpointHttpStatus200``, ``CheckIfTokenEndpointResponseError``,
    ``CheckForAccessTokenValue``,
    ``ValidateExpiresIn``, ``CheckTokenEndpointCacheHeaders`` and ``CheckTokenTypeIsBearer``."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert "no-store" in response.headers.get("Cache-Control", "")
    body = response.json()
    assert "error" not in body and body["access_token"]
    assert body["token_type"].lower() == "bearer"
    if "expires_in" in body:
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    return body


def check_token_error(response: requests.Response, error: str) -> None:
    """``CheckTokenEndpointHttpStatus400``, ``CheckTokenEndpointReturnedJsonContentType``,
    ``CheckErrorFromTokenEndpointResponseErrorInvalidGrant`` and the error's RFC 6749 §5.2 characters."""
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error
    assert ERROR_DESCRIPTION.fullmatch(body.get("error_description", ""))
    assert "error_uri" not in body or body["error_uri"].startswith("https://")


def check_userinfo(response: requests.Response, id_token: dict[str, Any]) -> dict[str, Any]:
    """``EnsureHttpStatusCodeIs200``, ``EnsureContentTypeJson``, ``ValidateUserInfoStandardClaims``,
    ``EnsureUserInfoContainsSub``, ``EnsureUserInfoUpdatedAtValid`` and
    ``VerifyUserInfoAndIdTokenInTokenEndpointSameSub`` (OIDCC-5.3.2)."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    info = response.json()
    assert info["sub"] == id_token["sub"]
    if "updated_at" in info:
        assert isinstance(info["updated_at"], int)
    for name in ("email_verified", "phone_number_verified"):
        if name in info:
            assert isinstance(info[name], bool)
    if "address" in info:
        assert isinstance(info["address"], dict)
    return info


def json_of(text: str) -> Any:
    return json.loads(text)
