"""UAAOAuth2Validator: glue between django-oauth-toolkit and UAA. Each hook is short and delegates."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from tokens.formats.id_token import TYP as ID_TOKEN_TYP
from tokens.formats.id_token import id_token_claims, sign_id_token
from tokens.formats.rfc9068 import TYP as ACCESS_TOKEN_TYP
from tokens.signing import SigningKeyChanged, unconfirmed_kids, verification_key, verify_jwt
from tokens.stored_tokens import load_access_token
from uaa.oauth import (
    access_tokens,
    audit,
    claims,
    client_cache,
    clientauth,
    codes,
    consent,
    not_before,
    refresh_tokens,
    rfc7523,
    rfc7636,
    rfc8707,
)
from uaa.oauth.grant_context import grant_context
from uaa.oauth.hashers import UNKNOWN_CLIENT_SECRET, is_client_secret_hash, verify_client_secret
from uaa.oauth.models import Client
from uaa.oauth.scopes import scopes_for_client

logger = logging.getLogger(__name__)


class UAAOAuth2Validator(OAuth2Validator):
    # --- clients -------------------------------------------------------------------------------
    def validate_grant_type(
        self,
        client_id: str,
        grant_type: str,
        client: Any,
        request: OAuthlibRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """RFC 6749 §5.2 ``unauthorized_client``: a grant this client is not registered for
        (django-oauth-toolkit's ``Client.allows_grant_type``). Which grant types UAA offers at all is the
        server's (uaa/oauth/server.py)."""
        if not super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs):
            return False
        if grant_type == "client_credentials":
            self._resolve_resources(request)
        return True

    def client_authentication_required(self, request: OAuthlibRequest, *args: Any, **kwargs: Any) -> bool:
        """A request carrying a client assertion asked to be authenticated by it (RFC 7523 §2.2)."""
        return rfc7523.present(request) or super().client_authentication_required(request, *args, **kwargs)

    def authenticate_client(self, request: OAuthlibRequest, *args: Any, **kwargs: Any) -> bool:
        """RFC 6749 §2.3: one method per request (else invalid_request), one client, by its registered
        method; a body client_id naming another client fails. A secret is the current one or, while a
        rotation's grace window runs, the previous one (``clientauth.previous_secret_matches``: both are
        hashed on every request). Throttled before anything is checked, and every failure counted and
        recorded (uaa/oauth/clientauth.py). RFC 7523 §2.2: a client assertion (private_key_jwt) is checked
        by rfc7523."""
        attempt = clientauth.begin(request)
        if attempt.method == clientauth.JWT:
            try:
                rfc7523.authenticate_request(request)
            except rfc7523.AssertionRejected as exc:
                assertion = str(request.client_assertion or "")
                clientauth.failed(attempt, request=request, reason=str(exc), assertion=assertion)
                return False
            clientauth.succeeded(attempt, client=request.client)
            return True
        if attempt.method == clientauth.BASIC:
            authenticated = self._authenticate_basic_auth(request)
        else:
            authenticated = self._authenticate_request_body(request)
        presented = clientauth.presented_secret(request, attempt.method)
        if not isinstance(request.client, Client):  # no such client: the hash a wrong secret costs (issue 12)
            verify_client_secret(provided=presented, stored=UNKNOWN_CLIENT_SECRET)
        # the previous secret in its grace window, or a stand-in: one more hash on every path, always
        if clientauth.previous_secret_matches(request, presented=presented):
            authenticated = True
        reason = None
        if authenticated and request.client.token_endpoint_auth_method == request.client.PRIVATE_KEY_JWT:
            authenticated, reason = False, clientauth.USE_ASSERTION  # its secret does not authenticate it
        if authenticated and request.client_id and request.client_id != request.client.client_id:
            authenticated, reason = False, clientauth.OTHER_CLIENT
        if not authenticated:
            clientauth.failed(attempt, request=request, reason=reason)
            return False
        clientauth.succeeded(attempt, client=request.client)
        return True

    def authenticate_client_id(
        self, client_id: str, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> bool:
        """RFC 6749 §3.2.1: a public client identifies itself by client_id; throttled and counted alike."""
        attempt = clientauth.begin(request)
        if super().authenticate_client_id(client_id, request, *args, **kwargs):
            clientauth.succeeded(attempt, client=request.client)
            return True
        clientauth.failed(attempt, request=request)
        return False

    def _extract_basic_auth(self, request: OAuthlibRequest) -> str | None:
        """RFC 9110 §11.1: the scheme is case-insensitive (DOT accepts ``Basic`` only); clientauth parses."""
        return clientauth.basic_credentials((request.headers or {}).get("HTTP_AUTHORIZATION") or "")

    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        """RFC 6749 §2.3.1 against the fast client-secret hash (uaa/oauth/hashers.py), which Django's
        password API (DOT's check) never verifies; other stored forms keep DOT's check."""
        if is_client_secret_hash(stored_secret):
            return verify_client_secret(provided=provided_secret, stored=stored_secret)
        return bool(super()._check_secret(provided_secret, stored_secret))

    def get_default_redirect_uri(
        self, client_id: str, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        """OIDC Core §3.1.2.1: redirect_uri is REQUIRED, so the token request needs it (RFC 6749 §4.1.3)."""
        return None

    def _resolve_resources(self, request: OAuthlibRequest) -> None:
        """RFC 8707 §2: settle the resources (repeated, inherited, narrowed, allowed) before the token is
        signed (uaa/oauth/rfc8707.py). django-oauth-toolkit settles them only when it saves the token,
        after ``aud`` was written, and its ``invalid_target`` would then escape the JSON error handling."""
        rfc8707.settle_token_request(request)

    def _load_application(self, client_id: str | None, request: OAuthlibRequest) -> Any:
        """DOT's lookup from the per-process client cache (uaa/oauth/client_cache.py: every use checks the
        row's generation, so a changed or deleted client is never used from an old copy); minus the query
        for a NUL in client_id (psycopg 3 answers it with DataError, a 500). With CIMD on, DOT's own."""
        if client_id and "\x00" in client_id:
            return None
        if oauth2_settings.CIMD_ENABLED or not isinstance(client_id, str) or not client_id:
            return super()._load_application(client_id, request)
        held = request.client
        if isinstance(held, Client) and held.client_id == client_id and held.is_usable(request):
            return held  # loaded earlier in this request
        prefetched = grant_context(request).client_version  # read with the throttle counters
        if prefetched is not None and prefetched[0] == client_id:
            client = client_cache.get_client(client_id, version=prefetched[1])
        else:
            client = client_cache.get_client(client_id)
        request.client = client if client is not None and client.is_usable(request) else None
        return request.client

    # --- scopes --------------------------------------------------------------------------------
    def validate_scopes(
        self,
        client_id: str,
        scopes: list[str],
        client: Any,
        request: OAuthlibRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """RFC 6749 §3.3: only the scopes this client may be granted (uaa/oauth/scopes.py). On an
        authorization request the resources are checked here too (RFC 8707 §2.1, uaa/oauth/rfc8707.py):
        oauthlib has no hook of its own for them, and this one runs on every authorization request, once
        the client and redirect URI are valid, before anyone is asked to sign in or consent."""
        if request.response_type:
            rfc8707.check_authorization_request(request)
            self._check_claims_request(request)
        return bool(super().validate_scopes(client_id, scopes, client, request, *args, **kwargs))

    def _check_claims_request(self, request: OAuthlibRequest) -> None:
        """OIDC Core §5.5: a ``claims`` parameter of the wrong shape is ``invalid_request`` on the redirect
        (oauthlib's own decoding, later, would answer the error page); what is kept is the request reduced
        to what UAA knows (uaa/oauth/claims.py), which oauthlib then leaves as it is."""
        try:
            request.claims = claims.parse_claims_request(request.claims) or None
        except claims.MalformedClaimsRequest as malformed:
            raise oauthlib_errors.InvalidRequestError(request=request, description=str(malformed)) from None

    def get_original_scopes(
        self, refresh_token: str, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> list[str]:
        """RFC 6749 §6: a refresh gets the original scope, less what the client may no longer be granted
        (§3.3): an extra scope an admin took away ends at the next refresh, not when the family does."""
        original = super().get_original_scopes(refresh_token, request, *args, **kwargs)
        original = original.split() if isinstance(original, str) else list(original or [])
        available = set(scopes_for_client(request.client))
        return [scope for scope in original if scope in available]

    # --- authorization codes -------------------------------------------------------------------
    def _create_authorization_code(
        self, request: OAuthlibRequest, code: dict[str, str], expires: Any = None
    ) -> Any:
        # RFC 8707 §2: the resources named (checked again: the consent form may have been edited), or
        # the client's default, so that the code exchange and refreshes can only narrow them.
        request.resource = rfc8707.resources_for_new_code(request)
        session_auth = grant_context(request).session_auth  # from AuthorizeView
        # OIDC Core §5.5: what of the claims request the grant keeps (uaa/oauth/claims.py); stored by DOT.
        request.claims = self._granted_claims_request(request) or None
        with transaction.atomic():  # the code and its audit record together
            # A session that began before the user's not-before time (accounts/revocation.py) issues no code.
            if not_before.session_code_refused(user=request.user, context=session_auth):
                raise oauthlib_errors.LoginRequired(request=request)
            grant = super()._create_authorization_code(request, code, expires)
            codes.record_auth_context(grant=grant, context=session_auth)
            audit.authorization_granted(code=code["code"], request=request)
            # What the user granted, no more than the consent page showed (uaa/oauth/consent.py).
            consent.remember(user=request.user, client_id=request.client_id, scopes=list(request.scopes))
        return grant

    def _granted_claims_request(self, request: OAuthlibRequest) -> claims.ClaimsRequest:
        """§5.5.1: a ``sub`` asked for that is not the user's fails (``login_required``); claims outside
        the granted scopes stay only if the consent page listed them or the client is trusted."""
        requested = claims.parse_claims_request(request.claims)  # checked by validate_scopes
        if claims.sub_mismatch(requested, user=request.user):
            raise oauthlib_errors.LoginRequired(request=request, description=claims.SUB_MISMATCH)
        shown = grant_context(request).consent == "given" or bool(request.client.trusted)
        return claims.granted_request(requested, scopes=request.scopes, shown=shown)

    def is_pkce_required(self, client_id: str, request: OAuthlibRequest) -> bool:
        """RFC 7636 by the client's ``require_pkce`` (uaa/oauth/rfc7636.py). At the authorization endpoint
        the server has checked PKCE already, by the stricter rule (uaa/oauth/server.py ``check_pkce``); at
        the token endpoint a code issued without a challenge is redeemed only for a client whose policy
        lets it be issued so, else ``invalid_grant``."""
        return rfc7636.code_exchange_requires_pkce(request.client)

    def get_code_challenge(self, code: str, request: OAuthlibRequest) -> str | None:
        """RFC 9700 §4.8.2: a ``code_verifier`` for a code issued without a challenge is ``invalid_grant``
        (django-oauth-toolkit and oauthlib would ignore it)."""
        challenge = super().get_code_challenge(code, request)
        rfc7636.check_code_exchange(request, challenge=challenge)
        return challenge

    def validate_code(
        self, client_id: str, code: str, client: Any, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> bool:
        rfc7636.check_token_request(request)
        codes.lock_for_redemption(code=code)  # concurrent redemptions of one code queue up here
        if super().validate_code(client_id, code, client, request, *args, **kwargs):
            codes.load_auth_context(code=code, client=client, request=request)
            grant = grant_context(request).code
            if grant is not None and not_before.redeemed_code_refused(grant=grant):
                return False  # issued by a session that began before a revocation: invalid_grant
            self._resolve_resources(request)
            return True
        # RFC 6749 §4.1.2: a code used twice revokes the tokens issued on its first use.
        codes.revoke_tokens_of_replayed_code(code=code, request=request)
        return False

    def confirm_redirect_uri(
        self,
        client_id: str,
        code: str,
        redirect_uri: str,
        client: Any,
        request: OAuthlibRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """RFC 6749 §5.2: a redirect_uri other than the authorization request's is invalid_grant."""
        if not super().confirm_redirect_uri(client_id, code, redirect_uri, client, request, *args, **kwargs):
            raise oauthlib_errors.InvalidGrantError(request=request)
        return True

    def save_bearer_token(
        self, token: dict[str, Any], request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        """DOT's, in the token request's own transaction (``TokenView``) without a savepoint of its own:
        any failure here rolls the whole request back anyway, so the SAVEPOINT and its RELEASE were two
        round trips for nothing. Outside a transaction it opens one, as DOT does. Under
        tokens.signing.optimistic (TokenView, client credentials) the token and its record are one
        statement that confirms the signing key (``_store_confirmed``)."""
        kids = unconfirmed_kids()
        if kids is not None:
            self._store_confirmed(token, request, kids)
            return
        with transaction.atomic(savepoint=False):
            self._save_bearer_token(token, request, *args, **kwargs)

    def _store_confirmed(self, token: dict[str, Any], request: OAuthlibRequest, kids: list[str]) -> None:
        """A client-credentials token and its audit record in one statement, stored only if the key that
        signed it is still active (uaa/oauth/access_tokens.py); else ``SigningKeyChanged``, and TokenView
        answers the request again the locked way. DOT's ``_save_bearer_token`` minus what this grant never
        has (a user, a refresh token, an ID token)."""
        if request.grant_type != "client_credentials" or "scope" not in token or token.get("refresh_token"):
            raise RuntimeError("only a client-credentials token is stored by _store_confirmed")
        self._check_and_set_request_resource(request)  # RFC 8707, as DOT's save does first
        request.user = None
        access_token = get_access_token_model()(
            user=None,
            scope=token["scope"],
            expires=self._access_token_expires(request),
            application=request.client,
            resource=getattr(request, "resource", []),
        )
        self._set_token_value(access_token, token["access_token"])
        statement = access_tokens.store_statement(access_token=access_token, kids=kids)
        if not audit.token_issued(token=token, request=request, with_event=statement):
            raise SigningKeyChanged(",".join(kids))  # nothing stored: the key moved on
        grant_context(request).access_token_checksum = access_token.token_checksum

    def _save_bearer_token(
        self, token: dict[str, Any], request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        """Inside DOT's transaction (``save_bearer_token``): no token without its audit record. A refresh
        rotates with updates where DOT deletes and inserts (uaa/oauth/refresh_tokens.py ``rotate``)."""
        if refresh_tokens.rotates(request=request, token=token):
            if "scope" not in token:
                raise oauthlib_errors.FatalClientError("Failed to renew access token: missing scope")
            self._check_and_set_request_resource(request)  # RFC 8707, as DOT's save does first
            access_token, _ = refresh_tokens.rotate(
                request=request, token=token, expires=self._access_token_expires(request), validator=self
            )
            grant_context(request).access_token_checksum = access_token.token_checksum
        else:
            super()._save_bearer_token(token, request, *args, **kwargs)
        audit.token_issued(token=token, request=request)

    def _access_token_expires(self, request: OAuthlibRequest) -> datetime:
        """RFC 9068 §2.2: the record expires when the JWT's exp says, not when DOT got round to saving it."""
        context = grant_context(request)
        if context.access_token_exp is None:  # noted by ACCESS_TOKEN_GENERATOR, which made the token
            raise RuntimeError("the access token was not made by uaa.oauth.access_tokens")
        return datetime.fromtimestamp(context.access_token_exp, UTC)

    def _create_access_token(
        self,
        expires: datetime,
        request: OAuthlibRequest,
        token: dict[str, Any],
        source_refresh_token: Any = None,
    ) -> Any:
        expires = self._access_token_expires(request)
        access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        grant_context(request).access_token_checksum = access_token.token_checksum
        return access_token

    def _create_refresh_token(
        self,
        request: OAuthlibRequest,
        refresh_token_code: str,
        access_token: Any,
        previous_refresh_token: Any,
    ) -> Any:
        refresh_token = super()._create_refresh_token(
            request, refresh_token_code, access_token, previous_refresh_token
        )
        grant_context(request).refresh_token_family = refresh_token.token_family
        return refresh_token

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)
        codes.remember_redemption(code=code, request=request)

    # --- refresh tokens ------------------------------------------------------------------------
    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> bool:
        # A reuse revokes the family and is recorded together, in the token request's transaction (no
        # savepoint: nothing here is rolled back alone, and a failure rolls the whole request back).
        with transaction.atomic(savepoint=False):
            # concurrent presentations of one refresh token queue up here: one rotates it, the rest are reuse
            presented: Any = refresh_tokens.locked_for_rotation(refresh_token=refresh_token, client=client)
            if not self._refresh_token_valid(presented, refresh_token, client, request):
                audit.refresh_token_rejected(refresh_token=refresh_token, request=request)
                return False
        if not request.user.is_active:
            return False  # a deactivated account's grants end with it
        redemption = codes.load_family_context(family=presented.token_family, request=request)
        if not_before.refresh_refused(token=presented, lock=True, redemption=redemption):
            return False  # the family was granted before the user's not-before time: invalid_grant
        self._resolve_resources(request)
        return True

    @staticmethod
    def _refresh_token_valid(rt: Any, refresh_token: str, client: Any, request: OAuthlibRequest) -> bool:
        """django-oauth-toolkit 3.4.1's ``validate_refresh_token`` checks, step for step, on the row
        ``locked_for_rotation`` read (with its access token, user and client: one statement where DOT's
        method sends four). A revoked row is honoured only within ``REFRESH_TOKEN_GRACE_PERIOD_SECONDS``
        (0 here) and only if it was superseded; otherwise its family is revoked (reuse, RFC 9700 §4.14.2).
        A live row needs its access token and must not be older than ``REFRESH_TOKEN_EXPIRE_SECONDS``
        after that token's expiry. The client must be the token's."""
        if rt is None:
            return False
        if rt.revoked is not None:
            grace = timedelta(seconds=oauth2_settings.REFRESH_TOKEN_GRACE_PERIOD_SECONDS)
            grace_expired = rt.revoked <= timezone.now() - grace
            superseded = get_access_token_model().objects.filter(source_refresh_token=rt).exists()
            if grace_expired or not superseded:
                if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION and rt.token_family:
                    get_refresh_token_model().revoke_family(rt.token_family)
                return False
        if rt.revoked is None:
            if rt.access_token is None:
                return False
            expire_delta = refresh_token_expire_timedelta()
            if expire_delta and rt.access_token.expires + expire_delta <= timezone.now():
                return False
        request.user = rt.user
        request.refresh_token = refresh_token  # the presented token (hashed at rest: rt.token is blank)
        request.refresh_token_instance = rt
        return client is not None and rt.application_id == client.pk

    def refresh_id_token(self, request: OAuthlibRequest) -> bool:
        """OIDC Core §12.2: a refresh response MAY carry a new ID token; UAA keeps it to the code exchange."""
        return False

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        """RFC 7009 §2.1: the revocation and its audit record share one transaction."""
        with transaction.atomic():
            token_type = audit.revocable_token_type(token=token, request=request)
            super().revoke_token(token, token_type_hint, request, *args, **kwargs)
            if token_type:
                audit.token_revoked(token=token, token_type=token_type, request=request)

    # --- access tokens -------------------------------------------------------------------------
    def validate_bearer_token(self, token: str, scopes: list[str], request: OAuthlibRequest) -> bool:
        """RFC 6750 §2.1: from the Authorization header, where uaa/oauth/http.py puts a §2.2 form-body
        token (userinfo); never from the query (RFC 9700 §4.3.2) or any other body; an active user's."""
        if "Authorization" not in request.headers or request.access_token is not None:
            return False
        request.uri = rfc8707.own_resource_uri(request.uri)  # the token's aud must name UAA (RFC 9068 §4)
        if not super().validate_bearer_token(token, scopes, request):
            return False
        if not_before.access_token_refused(token=request.access_token):
            return False  # stored before the user's not-before time (accounts/revocation.py)
        return request.user is None or request.user.is_active

    def _load_access_token(self, token: str) -> Any:
        """A stored, unrevoked token whose signature verifies against a still-published key, with its
        client and user read in the same plain statement (tokens/stored_tokens.py; DOT's ORM query cost
        more to compile than to run)."""
        if verify_jwt(token, typ=ACCESS_TOKEN_TYP) is None:
            return None
        return load_access_token(token)

    # --- OpenID Connect ------------------------------------------------------------------------
    def validate_silent_login(self, request: OAuthlibRequest) -> bool:
        # prompt=none is decided by uaa.oauth.views.AuthorizeView, which sees the SSO session.
        return True

    def validate_silent_authorization(self, request: OAuthlibRequest) -> bool:
        return True

    def get_oidc_claims(self, token: Any, token_handler: Any, request: OAuthlibRequest) -> dict[str, Any]:
        """The ID token's claims about the user (OIDC Core §5.4, §5.5), from the code being redeemed;
        never from a ``claims`` parameter of the token request."""
        requested = codes.stored_claims_request(grant_context(request).code)
        return claims.released(
            user=request.user, scopes=request.scopes, requested=requested, target=claims.ID_TOKEN
        )

    def get_userinfo_claims(self, request: OAuthlibRequest) -> dict[str, Any]:
        """OIDC Core §5.3.2: the claims of the token's scopes and those its code's request asked for at
        userinfo (uaa/oauth/claims.py)."""
        requested = codes.claims_request_of(request.access_token)
        return claims.released(
            user=request.user, scopes=request.scopes, requested=requested, target=claims.USERINFO
        )

    def get_discovery_claims(self, request: Any) -> list[str]:
        return list(claims.USER_CLAIMS)

    def get_id_token_dictionary(
        self, token: dict[str, Any], token_handler: Any, request: OAuthlibRequest
    ) -> tuple[dict[str, Any], datetime]:
        claims = self.get_oidc_claims(token, token_handler, request)
        sign_in = grant_context(request)  # the code's (uaa/oauth/codes.py)
        return id_token_claims(
            claims,
            now=timezone.now(),
            auth_time=sign_in.auth_time,
            amr=sign_in.amr,
            acr=sign_in.acr,
            sid=sign_in.sid,
        )

    def finalize_id_token(
        self, id_token: dict[str, Any], token: dict[str, Any], token_handler: Any, request: OAuthlibRequest
    ) -> str:
        """OIDC Core §2: sign the ID token with the active key of the client's registered algorithm."""
        claims, expires = self.get_id_token_dictionary(token, token_handler, request)
        # The nonce is the authorization request's (OIDC Core §3.1.3.6), which oauthlib copied from the
        # code into ``id_token``; never ``request.nonce``: at the token endpoint, whatever the client posted.
        id_token.update(claims)
        serialized = sign_id_token(claims=id_token, algorithm=request.client.algorithm)
        request.id_token = self._save_id_token(id_token["jti"], request, expires)
        request.access_token = request.id_token
        return serialized

    def _get_key_for_token(self, token: str) -> Any:
        """The published key named by the ID token's ``kid`` (ID tokens outlive key rotation), only
        if the header's ``alg`` is that key's and ``typ`` is an ID token's (RFC 8725 §3.1, §3.11)."""
        return verification_key(token, typ=ID_TOKEN_TYP)
