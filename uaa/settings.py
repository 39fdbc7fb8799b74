"""The only settings module: 12-factor, from the environment, with local-safe defaults.

Local defaults (a fixed SECRET_KEY, an issuer on localhost, a key-encryption key kept in a file
under ``var/``) apply only when ``DEBUG`` is asked for. Without ``DEBUG`` a missing ``SECRET_KEY``,
``UAA_ISSUER`` or ``UAA_KEK``/``UAA_KEK_FILE`` stops the import with ``ImproperlyConfigured``. Every other
configuration error (a value set but empty or malformed, a removed variable) is a system check in
uaa/checks.py, which every process runs when Django starts (uaa/apps.py) and refuses to start on.

Importing this module reads the environment and nothing else: it imports nothing of UAA's and creates no
file or directory. ``UAA_VAR_DIR`` (the embedded defaults' SQLite file and filesystem broker) is made by
``make run``, and by the tests for theirs (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import environ

env = environ.Env()
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.str("UAA_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
REQUIRED = environ.Env.NOTSET  # a missing value raises ImproperlyConfigured

SECRET_KEY = env("SECRET_KEY", default="local-only-not-secret-" + "x" * 40 if DEBUG else REQUIRED)
UAA_ISSUER = env("UAA_ISSUER", default="http://localhost:8000" if DEBUG else REQUIRED).rstrip("/")

# Key-encryption keys (KEKs) wrap the private halves of signing keys (tokens/keys.py). UAA_KEK holds
# one or more base64url-encoded 32-byte keys, comma separated, the first one current; UAA_KEK_FILE
# names a file holding the same. Neither is ever stored in the database.
UAA_KEK = env("UAA_KEK", default="")
UAA_KEK_FILE = env("UAA_KEK_FILE", default=str(VAR_DIR / "dev.kek") if DEBUG else "")
UAA_KEK_FILE_NAMED = "UAA_KEK_FILE" in env.ENVIRON  # named: it must exist, even next to UAA_KEK
# An http issuer without DEBUG: for a loopback address only (a laptop, tests); manage.py check refuses others.
# Set-but-empty or malformed values (an empty or relative issuer, a short SECRET_KEY, a KEK that is not 32
# bytes or a KEK file that is not there) stop every process when Django starts: uaa.E001 (uaa/checks.py).
UAA_ALLOW_HTTP_ISSUER = env.bool("UAA_ALLOW_HTTP_ISSUER", default=False)

# RFC 9110 §7.2: the hosts UAA answers for. Always the issuer's (bracketed if an IPv6 literal, as Django
# compares it), plus the names ALLOWED_HOSTS lists (a health check's); the local names only with DEBUG.
# Never ``testserver``: Django's test set-up adds it for the test client itself.
_ISSUER_HOST = (urlsplit(UAA_ISSUER).hostname or "").lower()
_ISSUER_HOST = f"[{_ISSUER_HOST}]" if ":" in _ISSUER_HOST else _ISSUER_HOST
ALLOWED_HOSTS = list(
    dict.fromkeys(
        [*([_ISSUER_HOST] if _ISSUER_HOST else []), *env.list("ALLOWED_HOSTS", default=[])]
        + (["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
    )
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "uaa.apps.UAAConfig",  # first: its ready() refuses to start on a configuration error (uaa/checks.py)
    "uaa.admin_site.UAAAdminConfig",  # django.contrib.admin, its actions' selections checked
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (the CSP allows no CDN)
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_celery_beat",
    "accounts",
    "tokens",
    "uaa.oauth",
]

MIDDLEWARE = [
    "uaa.metrics.MetricsMiddleware",  # first: it counts and times what every other one answers
    "uaa.middleware.RequestIdMiddleware",
    "uaa.middleware.RequestHygieneMiddleware",
    "uaa.middleware.LastGoodCopyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "uaa.middleware.SecurityHeadersMiddleware",
    # Django's session, auth, OTP, session-timeout and messages middleware, skipped on the JSON endpoints
    # and /.well-known/ only (uaa.middleware.browser_only): those need none of it (issue 12). CSRF stays
    # Django's own, on every path (manage.py check --deploy looks for it; on the csrf_exempt JSON views it
    # returns at once).
    "uaa.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "uaa.middleware.AuthenticationMiddleware",
    "uaa.middleware.OTPMiddleware",
    "uaa.middleware.SessionTimeoutMiddleware",
    "uaa.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "uaa.urls"
WSGI_APPLICATION = "uaa.wsgi.application"
ASGI_APPLICATION = "uaa.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'uaa.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Which process this is: "web" when uaa/wsgi.py or uaa/asgi.py loaded the settings (gunicorn, any WSGI or ASGI
# server); empty for manage.py commands (migrations, the audit export and verify), Celery and the shell.
UAA_PROCESS = env("UAA_PROCESS", default="")
# A database that is slow, stalled or locked must not hold the web process's workers (gunicorn's sync workers
# are few): PostgreSQL ends a statement after UAA_DB_STATEMENT_TIMEOUT, a lock wait after UAA_DB_LOCK_TIMEOUT,
# and a session idle inside a transaction after UAA_DB_IDLE_IN_TRANSACTION_TIMEOUT (seconds; 0: no limit), and
# such a request is a 503 with Retry-After like an outage (uaa/outage.py). Web process only: a migration or
# `manage.py audit export` may rightly run for minutes.
UAA_DB_STATEMENT_TIMEOUT = env.float("UAA_DB_STATEMENT_TIMEOUT", default=5.0)
UAA_DB_LOCK_TIMEOUT = env.float("UAA_DB_LOCK_TIMEOUT", default=3.0)
UAA_DB_IDLE_IN_TRANSACTION_TIMEOUT = env.float("UAA_DB_IDLE_IN_TRANSACTION_TIMEOUT", default=30.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _pg = DATABASES["default"].setdefault("OPTIONS", {})
    # libpq's connect_timeout: an unreachable database, or one that accepts and never answers, fails a request
    # in seconds instead of pinning a worker.
    _pg.setdefault("connect_timeout", env.int("UAA_DB_CONNECT_TIMEOUT", default=5))
    # TCP keepalives and TCP_USER_TIMEOUT (libpq): a connection whose peer vanished (a failover, a partition
    # that drops packets) is declared dead in about 30 s, instead of after the kernel's ~15 minutes of
    # retransmissions. Every process: they never cut a healthy connection, however long its query runs.
    _pg.setdefault("keepalives", 1)
    _pg.setdefault("keepalives_idle", 10)
    _pg.setdefault("keepalives_interval", 5)
    _pg.setdefault("keepalives_count", 3)
    _pg.setdefault("tcp_user_timeout", int(env.float("UAA_DB_TCP_USER_TIMEOUT", default=30.0) * 1000))
    if UAA_PROCESS == "web":
        _limits = " ".join(
            f"-c {name}={int(seconds * 1000)}"
            for name, seconds in (
                ("statement_timeout", UAA_DB_STATEMENT_TIMEOUT),
                ("lock_timeout", UAA_DB_LOCK_TIMEOUT),
                ("idle_in_transaction_session_timeout", UAA_DB_IDLE_IN_TRANSACTION_TIMEOUT),
            )
        )
        _pg["options"] = f"{_limits} {_pg.get('options', '')}".strip()  # DATABASE_URL's own options win
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not shared-cache memory, so tests with several connections see real SQLite locking.
    # One file per test run (pid), so that concurrent runs never share it; the runner deletes it at the end.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://uaa")}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "uaa.oauth.hashers.ClientSecretHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed static files once `collectstatic` has run (the Dockerfile sets UAA_STATIC_MANIFEST=1);
# otherwise files are served straight from the source tree.
UAA_STATIC_MANIFEST = env.bool("UAA_STATIC_MANIFEST", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if UAA_STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not UAA_STATIC_MANIFEST
WHITENOISE_AUTOREFRESH = DEBUG

# Database outages (uaa/outage.py): a 503 with this Retry-After, one log line per process per interval, and
# the public documents (JWKS, discovery) from their last good copy, if younger than UAA_LAST_GOOD_MAX_AGE. An
# hour: long enough for the verifiers that start or restart during an outage (the others keep the JWKS they
# cached), short enough that an outage nobody fixed does not keep serving a key set for a day; a key change
# makes older JWKS copies unservable anyway (docs/operations.md, Database outages).
UAA_UNAVAILABLE_RETRY_AFTER = env.int("UAA_UNAVAILABLE_RETRY_AFTER", default=10)
UAA_UNAVAILABLE_LOG_INTERVAL = env.float("UAA_UNAVAILABLE_LOG_INTERVAL", default=10.0)
UAA_LAST_GOOD_MAX_AGE = env.int("UAA_LAST_GOOD_MAX_AGE", default=3600)

# Readiness (uaa/health.py, /readyz): the answer is reused for UAA_READY_CACHE_SECONDS per process, and the
# sealer counts as stalled once a record has waited UAA_READY_SEAL_LAG seconds (beat seals every 10 s).
UAA_READY_CACHE_SECONDS = env.float("UAA_READY_CACHE_SECONDS", default=2.0)
UAA_READY_SEAL_LAG = env.int("UAA_READY_SEAL_LAG", default=300)

# Request hygiene: small bodies are all an authorization server ever needs.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("UAA_MAX_BODY_BYTES", default=64 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100

# Sessions and cookies: the SSO session.
SECURE = UAA_ISSUER.startswith("https://")
SESSION_ENGINE = "uaa.sessions"  # the database backend, for well-formed session keys only (uaa/sessions.py)
SESSION_COOKIE_NAME = "uaa_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = SECURE
SESSION_COOKIE_AGE = env.int("UAA_SESSION_MAX_AGE", default=12 * 3600)
# Idle timeout: an SSO session unused this long ends (its absolute limit is UAA_SESSION_MAX_AGE above).
UAA_SESSION_IDLE_TIMEOUT = env.int("UAA_SESSION_IDLE_TIMEOUT", default=3600)
CSRF_COOKIE_NAME = "uaa_csrf"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = SECURE
CSRF_FAILURE_VIEW = "uaa.oauth.views.csrf_failure"

# Transport security: on whenever the issuer is https. Whether a request came over TLS is the WSGI server's
# to say (wsgi.url_scheme): gunicorn believes X-Forwarded-Proto from --forwarded-allow-ips peers only, which
# docker-compose.yml and the Dockerfile set to UAA_TRUSTED_PROXIES (below). SECURE_PROXY_SSL_HEADER stays
# unset: Django would believe that header from any peer, a client straight at gunicorn included.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SECURE)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
# HSTS preloading (hstspreload.org) commits the whole registrable domain, every subdomain included, to HTTPS
# in browsers for months and is slow to undo, so the domain's owner opts in: UAA_HSTS_PRELOAD=true. Off,
# Django's deploy check security.W021 ("not preloaded") is a decision, not a finding, and is silenced below.
UAA_HSTS_PRELOAD = env.bool("UAA_HSTS_PRELOAD", default=False)
SECURE_HSTS_PRELOAD = UAA_HSTS_PRELOAD
SECURE_CONTENT_TYPE_NOSNIFF = True
# same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" with every form POST (Fetch
# §3.2.5), which Django's CSRF origin check refuses, so no form could be submitted. Cross-origin requests (the
# redirect to a client, with its code) still carry no Referer.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[]) + (
    [] if UAA_HSTS_PRELOAD else ["security.W021"]
)

# Multi-factor authentication (docs/mfa.md). Required for everyone unless UAA_MFA_REQUIRED=false; a
# client can still demand it (Client.requires_mfa, or acr_values=urn:uaa:acr:mfa in the request).
UAA_MFA_REQUIRED = env.bool("UAA_MFA_REQUIRED", default=True)
UAA_MFA_PENDING_SECONDS = env.int("UAA_MFA_PENDING_SECONDS", default=300)  # password done, factor not yet
UAA_MFA_REAUTH_SECONDS = env.int(
    "UAA_MFA_REAUTH_SECONDS", default=300
)  # removing a factor needs a sign-in this recent
UAA_MFA_ISSUER_NAME = env("UAA_MFA_ISSUER_NAME", default="UAA")  # the label authenticator apps show
UAA_BACKUP_CODE_COUNT = env.int("UAA_BACKUP_CODE_COUNT", default=10)
OTP_TOTP_ISSUER = UAA_MFA_ISSUER_NAME
OTP_TOTP_THROTTLE_FACTOR = 0  # accounts/throttling.py counts failures in the database instead
OTP_TOTP_SYNC = False  # the drift window stays ±1 step around the server clock (accounts/mfa/totp.py)
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # defence in depth: accounts/admin.py unregisters the device admin

# Credential-guessing limits (accounts/throttling.py); counters live in the database, shared by all workers.
UAA_THROTTLE_WINDOW = env.int("UAA_THROTTLE_WINDOW", default=900)  # failures are counted over 15 minutes
UAA_THROTTLE_ACCOUNT_FAILURES = env.int("UAA_THROTTLE_ACCOUNT_FAILURES", default=10)  # per e-mail address
UAA_THROTTLE_IP_FAILURES = env.int("UAA_THROTTLE_IP_FAILURES", default=50)  # per client IP address
UAA_LOCKOUT_SECONDS = env.int("UAA_LOCKOUT_SECONDS", default=900)  # how long a lock lasts
# The reverse proxies in front of UAA: addresses or CIDR networks they connect from (tokens/clientip.py).
# Their X-Forwarded-For names the client (throttling, the ledger); anyone else's is ignored. Default: a
# proxy on this host's loopback, like gunicorn's own --forwarded-allow-ips default; empty: no proxy. Behind
# a proxy that is not listed every user shares its address and IP limit. It replaces UAA_BEHIND_PROXY (on
# by default, which believed X-Forwarded-Proto from anyone) and the hop count this setting was: both are
# refused (uaa.E006, uaa.E005), as is anything that is not an address or a network.
UAA_TRUSTED_PROXIES = [
    part.strip()
    for part in env.str("UAA_TRUSTED_PROXIES", default="127.0.0.1/32,::1/128").split(",")
    if part.strip()
]
# Failed client authentication at the token, revocation and introspection endpoints (accounts/throttling.py,
# same counters and window): per registered client, per client address (IPv6: its /64), and the lock.
UAA_THROTTLE_CLIENT_FAILURES = env.int("UAA_THROTTLE_CLIENT_FAILURES", default=10)
UAA_THROTTLE_CLIENT_IP_FAILURES = env.int("UAA_THROTTLE_CLIENT_IP_FAILURES", default=50)
UAA_CLIENT_LOCKOUT_SECONDS = env.int("UAA_CLIENT_LOCKOUT_SECONDS", default=300)
# Client secret rotation (uaa/oauth/services.py rotate_client_secret): seconds the previous secret still
# authenticates after a rotation that names no window of its own (the API's grace_seconds, the admin's field).
# 0, none: a rotation is most often urgent (a leak), and a window nobody asked for would keep the leaked
# secret working; a planned rotation asks for one. At most 30 days (uaa.E007).
UAA_CLIENT_SECRET_GRACE_SECONDS = env.int("UAA_CLIENT_SECRET_GRACE_SECONDS", default=0)

# Request rate limits (uaa/oauth/ratelimit.py, docs/operations.md "Rate limits"): requests per window of
# UAA_RATELIMIT_WINDOW seconds per client (its successes; Client.rate_limit overrides) and per client address
# (all requests, IPv6: the /64), at each endpoint; 0: that limit is off. Counters in Redis when
# UAA_RATELIMIT_REDIS_URL names one (default: REDIS_URL, else a redis:// CACHE_URL), else in the database;
# Redis down: the limits fail open.
UAA_RATELIMIT_WINDOW = env.int("UAA_RATELIMIT_WINDOW", default=10)
UAA_RATELIMIT_TOKEN_CLIENT = env.int("UAA_RATELIMIT_TOKEN_CLIENT", default=500)  # 50/s
UAA_RATELIMIT_TOKEN_IP = env.int("UAA_RATELIMIT_TOKEN_IP", default=1000)  # 100/s
UAA_RATELIMIT_INTROSPECTION_CLIENT = env.int("UAA_RATELIMIT_INTROSPECTION_CLIENT", default=2000)  # 200/s
UAA_RATELIMIT_INTROSPECTION_IP = env.int("UAA_RATELIMIT_INTROSPECTION_IP", default=4000)  # 400/s
UAA_RATELIMIT_REVOCATION_CLIENT = env.int("UAA_RATELIMIT_REVOCATION_CLIENT", default=500)
UAA_RATELIMIT_REVOCATION_IP = env.int("UAA_RATELIMIT_REVOCATION_IP", default=1000)
UAA_RATELIMIT_USERINFO_CLIENT = env.int("UAA_RATELIMIT_USERINFO_CLIENT", default=1000)  # 100/s
UAA_RATELIMIT_USERINFO_IP = env.int("UAA_RATELIMIT_USERINFO_IP", default=2000)  # 200/s
_CACHE_REDIS = env.str("CACHE_URL", default="")
UAA_RATELIMIT_REDIS_URL = env.str(
    "UAA_RATELIMIT_REDIS_URL",
    default=env.str("REDIS_URL", default="") or (_CACHE_REDIS if _CACHE_REDIS.startswith("redis") else ""),
)
UAA_RATELIMIT_REDIS_TIMEOUT = env.float("UAA_RATELIMIT_REDIS_TIMEOUT", default=0.25)  # then: fail open

# private_key_jwt (uaa/oauth/rfc7523.py). An assertion's aud must be the issuer identifier alone
# (draft-ietf-oauth-rfc7523bis); True also accepts the token endpoint URL and the URL of the endpoint called.
UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD = env.bool("UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD", default=False)
# A client's jwks_uri (uaa/oauth/remote_jwks.py): one deadline for the whole fetch, and the internal networks
# (CIDRs) that may be fetched from although they are not public; none by default.
UAA_JWKS_URI_TIMEOUT = env.float("UAA_JWKS_URI_TIMEOUT", default=3.0)
UAA_JWKS_URI_ALLOWED_NETWORKS = env.list("UAA_JWKS_URI_ALLOWED_NETWORKS", default=[])
# A loopback jwks_uri (and plain http to it): for a laptop or tests only, never implied by http redirect URIs.
UAA_JWKS_URI_ALLOW_LOOPBACK = env.bool("UAA_JWKS_URI_ALLOW_LOOPBACK", default=False)

# Tokens and keys.
UAA_ACCESS_TOKEN_LIFETIME = env.int("UAA_ACCESS_TOKEN_LIFETIME", default=600)
UAA_ID_TOKEN_LIFETIME = env.int("UAA_ID_TOKEN_LIFETIME", default=600)
UAA_REFRESH_TOKEN_LIFETIME = env.int("UAA_REFRESH_TOKEN_LIFETIME", default=30 * 24 * 3600)
UAA_AUTHORIZATION_CODE_LIFETIME = env.int("UAA_AUTHORIZATION_CODE_LIFETIME", default=60)
UAA_JWKS_MAX_AGE = env.int("UAA_JWKS_MAX_AGE", default=600)
# The audit ledger's witness (tokens/witness.py): the last tree head this deployment signed, kept outside the
# database, so a sealer never extends a history the database rewrote. Every process that seals (worker, web
# for Seal now and manage.py audit) must see the same file: a volume of its own, never the database's.
UAA_AUDIT_WITNESS = env("UAA_AUDIT_WITNESS", default=str(VAR_DIR / "audit-witness.json"))
# Access tokens' algorithm: ES256 (a P-256 signature costs a fraction of an RSA one: docs/performance.md),
# RS256 or EdDSA (uaa.E003). ID tokens follow each client's registered algorithm (RS256 unless it asks).
UAA_ACCESS_TOKEN_ALG = env("UAA_ACCESS_TOKEN_ALG", default="ES256")

# Key lifecycle (tokens/rotation.py): next → active → retired → expired.
UAA_KEY_ROTATION_PERIOD = env.int("UAA_KEY_ROTATION_PERIOD", default=30 * 24 * 3600)
# A `next` key is published this long before it may sign: at least one JWKS cache lifetime (uaa.E004).
UAA_KEY_PREPUBLISH_SECONDS = env.int("UAA_KEY_PREPUBLISH_SECONDS", default=2 * UAA_JWKS_MAX_AGE)
# A retired key stays published for the longest token lifetime + the JWKS cache lifetime + this margin.
UAA_KEY_RETENTION_MARGIN = env.int("UAA_KEY_RETENTION_MARGIN", default=300)

UAA_SCOPES = {
    "openid": "Sign you in with your account",
    "profile": "See your name and profile (picture, website, birth date, time zone, language)",
    "email": "See your e-mail address",
    "address": "See your postal address",
    "phone": "See your phone number",
    "offline_access": "Stay signed in to the application when you are not using it",
}
# The admin REST API's scopes (uaa/api/): granted only to a client-credentials client registered for them
# (Client.allowed_scopes), never to a user's token (uaa/oauth/scopes.py).
UAA_ADMIN_SCOPES = {
    "uaa.clients.read": "Read the registered clients (admin API)",
    "uaa.clients.write": "Register, change, delete clients and rotate their secrets (admin API)",
    "uaa.users.read": "Read user accounts (admin API)",
    "uaa.users.write": "Create, deactivate, unlock user accounts and revoke their tokens (admin API)",
    "uaa.keys.read": "Read the signing keys' public halves and states (admin API)",
    "uaa.keys.write": "Rotate and revoke signing keys (admin API)",
    "uaa.audit.read": "Read the audit ledger's records and signed tree heads (admin API)",
    "uaa.metrics": "Read the server's Prometheus metrics (/metrics)",
}
UAA_SCOPES.update(UAA_ADMIN_SCOPES)
UAA_SCOPES.update(env.dict("UAA_EXTRA_SCOPES", default={}))

# /metrics (uaa/metrics.py, uaa/metrics_view.py): the networks (CIDRs) that may scrape without a token (a
# bearer token with the uaa.metrics scope is the other way in), and other multiprocess directories whose
# metrics the scrape merges (a Celery worker's own PROMETHEUS_MULTIPROC_DIR, on a shared volume).
UAA_METRICS_ALLOWED_NETWORKS = env.list("UAA_METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
UAA_METRICS_EXTRA_DIRS = env.list("UAA_METRICS_EXTRA_DIRS", default=[])

OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth.Client"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth.AuthorizationCode"
OAUTH2_PROVIDER = {
    "OAUTH2_VALIDATOR_CLASS": "uaa.oauth.validators.UAAOAuth2Validator",
    "OAUTH2_SERVER_CLASS": "uaa.oauth.server.Server",  # routes only OAUTH2_GRANT_TYPES_SUPPORTED
    "OIDC_SERVER_CLASS": "uaa.oauth.server.Server",
    "SCOPES_BACKEND_CLASS": "uaa.oauth.scopes.UAAScopes",
    "ACCESS_TOKEN_GENERATOR": "uaa.oauth.access_tokens.generate_access_token",
    "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    "CLIENT_SECRET_HASHER": "uaa_sha256",
    "APPLICATION_ADMIN_CLASS": "uaa.oauth.admin.ClientAdmin",
    "ACCESS_TOKEN_ADMIN_CLASS": "uaa.oauth.token_admin.AccessTokenAdmin",  # "revoke" needs change
    "REFRESH_TOKEN_ADMIN_CLASS": "uaa.oauth.token_admin.RefreshTokenAdmin",
    "ACCESS_TOKEN_EXPIRE_SECONDS": UAA_ACCESS_TOKEN_LIFETIME,
    "ID_TOKEN_EXPIRE_SECONDS": UAA_ID_TOKEN_LIFETIME,
    "REFRESH_TOKEN_EXPIRE_SECONDS": UAA_REFRESH_TOKEN_LIFETIME,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": UAA_AUTHORIZATION_CODE_LIFETIME,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": UAA_ISSUER,
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    "OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS": False,
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    "REQUEST_APPROVAL_PROMPT": "force",
    "ALLOWED_REDIRECT_URI_SCHEMES": env.list(
        "UAA_REDIRECT_URI_SCHEMES", default=["https", "http"] if DEBUG else ["https"]
    ),
    "ALLOW_URI_WILDCARDS": False,
    "ALLOW_LOCALHOST_LOOPBACK": False,
    "ERROR_RESPONSE_WITH_SCOPES": False,
    # RFC 9700 switches: every one on.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": not DEBUG,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,  # no django.contrib.auth lookups for the API's anonymous requests
    # No DRF view checks a password or a session; the admin API takes its access tokens (uaa/api/auth.py).
    # DRF's default Basic authentication would be a password-guessing endpoint outside accounts/throttling.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
# The admin API's OpenAPI document (/api/v1/schema, docs/openapi.yaml; uaa/api/urls.py).
SPECTACULAR_SETTINGS = {
    "TITLE": "UAA admin API",
    "DESCRIPTION": "Clients, signing keys, users and the audit ledger, authorized by access tokens with "
    "admin scopes from this server (docs/api.md).",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],  # the document is public, and no credential is checked to serve it
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"SigningAlgorithmEnum": "uaa.api.clients.ALGORITHMS"},
}

# E-mail (accounts/mail.py, docs/email.md). EMAIL_URL names the backend: smtp://user:password@host:587/?tls=1
# (STARTTLS), smtp+ssl://user:password@host:465 (TLS from the first byte), console:// (`make run`: printed),
# locmem:// (tests). Read with the standard library here; a URL it cannot read sends nothing and is an error
# at start-up (accounts.E001). Unset without DEBUG: every message is refused, loudly (accounts.W001).
_EMAIL_BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "smtp+tls": "django.core.mail.backends.smtp.EmailBackend",
    "smtp+ssl": "django.core.mail.backends.smtp.EmailBackend",
    "smtps": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}
_REFUSING_EMAIL_BACKEND = "accounts.mail.RefusingBackend"


def _email_settings(url: str) -> tuple[dict[str, object], str]:
    """EMAIL_URL as Django's EMAIL_* settings, and what is wrong with it ("" when nothing); the problem never
    repeats the URL (it may hold the password)."""
    from urllib.parse import parse_qs, unquote

    if not url:
        return {"EMAIL_BACKEND": _REFUSING_EMAIL_BACKEND}, ""
    refused: dict[str, object] = {"EMAIL_BACKEND": _REFUSING_EMAIL_BACKEND}
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return refused, "EMAIL_URL is not a URL (or its port is not a number)."
    scheme = parts.scheme
    if scheme not in _EMAIL_BACKENDS:
        return refused, "EMAIL_URL's scheme must be smtp, smtp+tls, smtp+ssl, smtps, console or locmem."
    found: dict[str, object] = {"EMAIL_BACKEND": _EMAIL_BACKENDS[scheme]}
    if not scheme.startswith("smtp"):
        return found, ""
    try:
        query = {
            key: values[-1] for key, values in parse_qs(parts.query, strict_parsing=bool(parts.query)).items()
        }
    except ValueError:
        return refused, "EMAIL_URL's query is not key=value pairs."
    unknown = sorted(set(query) - {"tls", "ssl", "timeout"})
    if unknown:
        return refused, f"EMAIL_URL has unknown parameters: {', '.join(unknown)} (tls, ssl, timeout)."
    flags = {}
    for key in ("tls", "ssl"):
        value = query.get(key, "0").lower()
        if value not in {"0", "1", "true", "false", "yes", "no", "on", "off"}:
            return refused, f"EMAIL_URL's {key} must be 1 or 0."
        flags[key] = value in {"1", "true", "yes", "on"}
    use_ssl = scheme in {"smtp+ssl", "smtps"} or flags["ssl"]
    use_tls = scheme == "smtp+tls" or flags["tls"]
    if use_ssl and use_tls:
        return refused, "EMAIL_URL asks for both STARTTLS (tls) and implicit TLS (ssl, smtps, smtp+ssl)."
    if not parts.hostname:
        return refused, "EMAIL_URL names no SMTP host."
    try:
        timeout = float(query.get("timeout", "10"))
    except ValueError:
        return refused, "EMAIL_URL's timeout must be a number of seconds."
    if not 0 < timeout <= 300:
        return refused, "EMAIL_URL's timeout must be more than 0 and at most 300 seconds."
    found.update(
        EMAIL_HOST=parts.hostname,
        EMAIL_PORT=port or (465 if use_ssl else 587 if use_tls else 25),
        EMAIL_HOST_USER=unquote(parts.username or ""),
        EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
        EMAIL_USE_TLS=use_tls,
        EMAIL_USE_SSL=use_ssl,
        EMAIL_TIMEOUT=timeout,
    )
    return found, ""


_EMAIL, UAA_EMAIL_URL_PROBLEM = _email_settings(env.str("EMAIL_URL", default="console://" if DEBUG else ""))
EMAIL_BACKEND = str(_EMAIL["EMAIL_BACKEND"])
EMAIL_HOST = str(_EMAIL.get("EMAIL_HOST", "localhost"))
EMAIL_PORT = int(str(_EMAIL.get("EMAIL_PORT", 25)))
EMAIL_HOST_USER = str(_EMAIL.get("EMAIL_HOST_USER", ""))
EMAIL_HOST_PASSWORD = str(_EMAIL.get("EMAIL_HOST_PASSWORD", ""))  # Django's debug page hides *PASSWORD*
EMAIL_USE_TLS = bool(_EMAIL.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_EMAIL.get("EMAIL_USE_SSL", False))
EMAIL_TIMEOUT = float(str(_EMAIL.get("EMAIL_TIMEOUT", 10)))
del _EMAIL
UAA_EMAIL_CONFIGURED = EMAIL_BACKEND != _REFUSING_EMAIL_BACKEND
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"UAA <no-reply@{_ISSUER_HOST or 'localhost'}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_SUBJECT_PREFIX = ""
# A message is tried this many times more after its first failure, waiting 2, 4, 8, ... seconds (at most
# UAA_EMAIL_RETRY_BACKOFF_MAX, with jitter); then it is logged (accounts.mail.failed) and counted as failed.
UAA_EMAIL_MAX_RETRIES = env.int("UAA_EMAIL_MAX_RETRIES", default=12)
UAA_EMAIL_RETRY_BACKOFF_MAX = env.int("UAA_EMAIL_RETRY_BACKOFF_MAX", default=600)

# Celery: Redis (or any broker) in production; an embedded filesystem broker on a laptop.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=env("REDIS_URL", default="filesystem://"))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"  # made by `make run` (the worker lists it), never here
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TIMEZONE = "UTC"
# The schedule lives in the database (Django admin → Periodic tasks), seeded by tokens/migrations/0003.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

_CLIENT_FAULTS = [  # django.core.exceptions.SuspiciousOperation and the subclasses Django logs by class name
    "SuspiciousOperation",
    "DisallowedHost",
    "DisallowedRedirect",
    "RequestDataTooBig",
    "TooManyFieldsSent",
    "TooManyFilesSent",
    "SuspiciousMultipartForm",
    "SuspiciousFileOperation",
    "SuspiciousSession",
    "DisallowedModelAdminToField",
    "DisallowedModelAdminLookup",
]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "uaa.logging.RedactSecretsFilter"},
        "client_fault": {"()": "uaa.logging.ClientFaultFilter"},
    },
    "formatters": {
        "json": {"()": "uaa.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env("UAA_LOG_FORMAT", default="plain" if DEBUG else "json"),
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env("UAA_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # Django logs its refusals of malformed requests at ERROR, each on its own logger; they are warnings.
        **{f"django.security.{name}": {"filters": ["client_fault"]} for name in _CLIENT_FAULTS},
        "oauthlib": {"level": "WARNING"},
        "oauth2_provider": {"level": "WARNING"},
    },
}
