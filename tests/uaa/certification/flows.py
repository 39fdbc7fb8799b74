"""The suite's standard flow (``AbstractOIDCCServerTest``): authorization request, callback checks, token
request, ID token checks, userinfo (``requestProtectedResource``), as one call the modules build on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.uaa.certification.rp import (
    RP,
    Browser,
    Callback,
    ErrorPage,
    check_error_callback,
    check_id_token,
    check_success_callback,
    check_token_response,
    check_userinfo,
)


@dataclass
class Flow:
    request: dict[str, str]
    callback: Callback
    code: str
    tokens: dict[str, Any]
    id_token: dict[str, Any]
    userinfo: dict[str, Any]


def authorize(
    rp: RP, browser: Browser, *, response_mode: str, nonce: bool = True, method: str = "GET", **extra: Any
) -> tuple[dict[str, str], Callback | ErrorPage]:
    """``performAuthorizationFlow``: the request (by GET, or POST as ``OIDCCEnsurePostRequestSucceeds``) and
    what the browser ends on."""
    request = rp.authorization_request(form_post=response_mode == "form_post", nonce=nonce, **extra)
    if method == "POST":
        return request, browser.open(rp.config["authorization_endpoint"], method="POST", data=request)
    return request, browser.open(rp.url(request))


def standard_flow(rp: RP, browser: Browser, *, response_mode: str, method: str = "GET", **extra: Any) -> Flow:
    """The happy flow every module starts with; asserts what ``AbstractOIDCCServerTest`` asserts."""
    request, callback = authorize(rp, browser, response_mode=response_mode, method=method, **extra)
    code = check_success_callback(callback, request, rp)
    assert isinstance(callback, Callback)
    tokens = check_token_response(rp.exchange(code))
    id_token = check_id_token(tokens, rp, request)
    userinfo = check_userinfo(rp.userinfo(tokens["access_token"]), id_token)  # requestProtectedResource
    return Flow(request, callback, code, tokens, id_token, userinfo)


def error_flow(
    rp: RP, browser: Browser, *, response_mode: str, **extra: Any
) -> tuple[dict[str, str], dict[str, str], Callback]:
    """An authorization request the OP answers with an error on the redirect URI."""
    request, callback = authorize(rp, browser, response_mode=response_mode, **extra)
    params = check_error_callback(callback, request, rp)
    assert isinstance(callback, Callback)
    return request, params, callback
