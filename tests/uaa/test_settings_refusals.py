"""Production refuses to start with settings that are set but unusable (issue 8 item 13).

Attacker: none in the room — a deployment mistake an attacker then finds. ``UAA_ISSUER=`` (an empty
variable in a compose file or a Kubernetes secret) passed ``env(..., default=REQUIRED)``, and the server
served discovery with issuer "" and issued tokens any relying party would refuse (or, worse, accept for
any issuer); ``SECRET_KEY=`` started and answered 500 on every page; a junk ``UAA_KEK`` or a
``UAA_KEK_FILE`` naming a missing file started and answered 500 on every token request. DESIGN.md:
"Production settings refuse to start with a missing secret rather than fall back silently" — an empty
one is as missing. Each case starts a fresh interpreter as production would (no DEBUG).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.uaa.live import BIN, KEK, ROOT, base_env, free_port, start, stop


def _start_django(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = (
        [str(BIN / "python"), *args] if args else [str(BIN / "python"), "-c", "import django; django.setup()"]
    )
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**base_env(tmp_path), "DJANGO_SETTINGS_MODULE": "uaa.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("UAA_ISSUER", "", "UAA_ISSUER is empty"),
        ("UAA_ISSUER", "/", "UAA_ISSUER is empty"),
        ("UAA_ISSUER", "id.example.com", "absolute https URL"),
        ("UAA_ISSUER", "/uaa", "absolute https URL"),
        ("UAA_ISSUER", "https://", "absolute https URL"),
        ("UAA_ISSUER", "ftp://id.example.com", "absolute https URL"),
        ("UAA_ISSUER", "https://id.example.com?x=1", "no query or fragment"),
        ("UAA_ISSUER", "https://id.example.com#top", "no query or fragment"),
        ("UAA_ISSUER", "https://user@id.example.com", "user information"),
        ("UAA_ISSUER", "https://id.example.com:port", "not a URL"),
        ("UAA_ISSUER", " https://id.example.com", "without spaces"),
        ("SECRET_KEY", "", "SECRET_KEY must be at least 50 characters (it is empty)"),
        ("SECRET_KEY", "   ", "SECRET_KEY must be at least 50 characters (it is empty)"),
        ("SECRET_KEY", "short-secret", "SECRET_KEY must be at least 50 characters"),
        ("UAA_KEK", "", "Set UAA_KEK"),
        ("UAA_KEK", "not-base64-!!!", "UAA_KEK must be one or more base64url-encoded 32-byte keys"),
        ("UAA_KEK", "c2hvcnQ", "UAA_KEK must be one or more base64url-encoded 32-byte keys"),
        ("UAA_KEK", f"{KEK},junk", "UAA_KEK must be one or more base64url-encoded 32-byte keys"),
        ("UAA_KEK", ",,,", "UAA_KEK must be one or more base64url-encoded 32-byte keys"),
    ],
)
def test_a_set_but_unusable_setting_stops_the_process(tmp_path, variable, value, message):
    """The settings module refuses at import (ImproperlyConfigured), so no process — gunicorn's workers,
    Celery, any manage.py command — serves anything with it; the message names the variable."""
    result = _start_django(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr[-1500:]
    assert value.strip() == "" or value not in result.stderr or variable == "UAA_ISSUER"  # no secret echoed


def test_a_kek_file_that_does_not_exist_stops_the_process(tmp_path):
    result = _start_django(tmp_path, UAA_KEK="", UAA_KEK_FILE=str(tmp_path / "missing.kek"))
    assert result.returncode != 0
    assert "does not exist or cannot be read" in result.stderr


def test_a_kek_file_with_junk_stops_the_process(tmp_path):
    junk = tmp_path / "junk.kek"
    junk.write_text("this is not a key\n")
    result = _start_django(tmp_path, UAA_KEK="", UAA_KEK_FILE=str(junk))
    assert result.returncode != 0
    assert "must hold base64url-encoded 32-byte keys" in result.stderr
    assert "this is not a key" not in result.stderr  # a KEK file's content is never echoed


def test_a_good_kek_file_and_a_list_of_keks_start(tmp_path):
    """What tokens/keys.py accepts still starts: a file with one key per line, a comma list in UAA_KEK."""
    good = tmp_path / "good.kek"
    good.write_text(f"{KEK}\n{KEK}\n")
    assert _start_django(tmp_path, UAA_KEK="", UAA_KEK_FILE=str(good)).returncode == 0
    assert _start_django(tmp_path, UAA_KEK=f"{KEK}, {KEK}").returncode == 0


def test_an_http_issuer_needs_debug_or_the_explicit_setting(tmp_path):
    """OpenID Connect Discovery 1.0 §3: the issuer is a URL using the https scheme. http is for a laptop
    (DEBUG) or a loopback test setup that says so (UAA_ALLOW_HTTP_ISSUER)."""
    refused = _start_django(tmp_path, UAA_ISSUER="http://127.0.0.1:8000", UAA_ALLOW_HTTP_ISSUER="false")
    assert refused.returncode != 0 and "UAA_ISSUER must use https" in refused.stderr
    assert _start_django(tmp_path, UAA_ISSUER="http://127.0.0.1:8000").returncode == 0  # base_env allows it
    assert _start_django(tmp_path, UAA_ISSUER="https://id.example.com").returncode == 0


def test_manage_py_check_refuses_the_http_allowance_for_a_host_that_is_not_loopback(tmp_path):
    """uaa.E002: UAA_ALLOW_HTTP_ISSUER is for this machine's own addresses; ``manage.py check`` (and
    ``migrate``, which runs the checks before the web command starts gunicorn) fails for any other host."""
    result = _start_django(
        tmp_path, "manage.py", "check", UAA_ISSUER="http://id.example.com", ALLOWED_HOSTS="id.example.com"
    )
    assert result.returncode != 0
    assert "uaa.E002" in result.stderr
    loopback = _start_django(tmp_path, "manage.py", "check", UAA_ISSUER="http://localhost:8000")
    assert loopback.returncode == 0, loopback.stderr[-1500:]


def test_the_system_check_reports_settings_changed_after_import(settings):
    """uaa.E001: the same rules over django.conf.settings (what a test or a settings override changed)."""
    from uaa.checks import check_settings

    settings.UAA_ISSUER = ""
    settings.SECRET_KEY = "x"
    ids = [message.id for message in check_settings()]
    assert ids.count("uaa.E001") == 2


def test_the_rules_accept_what_production_runs_with():
    from uaa.checks import http_issuer_off_loopback, problems

    assert (
        problems(
            debug=False,
            secret_key="s" * 50,
            issuer="https://id.example.com/uaa",
            allow_http_issuer=False,
            kek=KEK,
            kek_file="",
            kek_file_named=False,
        )
        == []
    )
    for loopback in ("http://127.0.0.2", "http://[::1]", "http://localhost", "https://id.example.com"):
        assert http_issuer_off_loopback(loopback) is None, loopback
    for elsewhere in ("http://testserver.example", "http://10.0.0.1", "http://a.localhost"):
        assert http_issuer_off_loopback(elsewhere), elsewhere


def test_gunicorn_does_not_start_with_an_empty_issuer(tmp_path):
    """As the image runs it (gunicorn alone, no manage.py before it): the workers cannot load the
    settings, so gunicorn exits instead of serving an issuer of ""."""
    port = free_port()
    env = {**base_env(tmp_path), "UAA_ISSUER": ""}
    log = tmp_path / "gunicorn.log"
    command = [str(BIN / "gunicorn"), "uaa.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    process = start(command, env, log)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.25)
        assert process.returncode not in (None, 0), log.read_text()[-2000:]
        assert "UAA_ISSUER is empty" in log.read_text()
    finally:
        stop([process])


# --- the issuer: https, or http on loopback only (issue 13 item 5) ----------------------------------------
# Attacker: again a mistake an attacker finds. UAA_ALLOW_HTTP_ISSUER (or DEBUG) is meant for a benchmark or a
# test on this machine; set on a real host (copied from a test recipe), the issuer's tokens, codes and the
# session cookies travel in clear. A host name that merely starts or ends like a loopback one
# (127.0.0.1.evil.com, localhost.evil.com), or a URL whose host is not what it seems (userinfo, a
# backslash), must not pass for loopback. The issuer is compared as an exact string by every relying party
# (OpenID Connect Core 1.0 §3.1.3.7 step 2, RFC 9207 §2.4), so its spelling must be the canonical one.
HATCH = {"debug": False, "hatch": True}
DEBUG_ONLY = {"debug": True, "hatch": False}
NEITHER = {"debug": False, "hatch": False}


@pytest.mark.parametrize(
    ("issuer", "mode", "expected"),
    [
        # http on a host that is not loopback: refused whatever DEBUG or the escape hatch say.
        ("http://example.com", HATCH, {"uaa.E002"}),
        ("http://example.com", DEBUG_ONLY, {"uaa.E002"}),
        ("http://example.com", {"debug": True, "hatch": True}, {"uaa.E002"}),
        ("http://10.0.0.1:8000", HATCH, {"uaa.E002"}),
        ("http://127.0.0.1.evil.com", HATCH, {"uaa.E002"}),
        ("http://localhost.evil.com", HATCH, {"uaa.E002"}),
        # RFC 6761 §6.3 lets resolvers answer *.localhost from the DNS: not this machine for certain.
        ("http://evil.localhost", HATCH, {"uaa.E002"}),
        # Spellings that some resolvers (inet_aton) read as 127.0.0.1: not a loopback literal, so refused.
        ("http://127.1", HATCH, {"uaa.E002"}),
        ("http://2130706433", HATCH, {"uaa.E002"}),
        ("http://0x7f000001", HATCH, {"uaa.E002"}),
        ("http://[::ffff:127.0.0.1]", HATCH, {"uaa.E002"}),
        ("http://loc%61lhost", HATCH, {"uaa.E001", "uaa.E002"}),  # a percent-encoded host: another spelling
        # userinfo: the host is after the @ (RFC 3986 §3.2.1); never allowed in an issuer.
        ("http://127.0.0.1@evil.com", HATCH, {"uaa.E001", "uaa.E002"}),
        ("http://127.0.0.1:8000@evil.com", HATCH, {"uaa.E001", "uaa.E002"}),
        ("http://evil.com@127.0.0.1", HATCH, {"uaa.E001"}),
        ("https://user:pass@id.example.com", NEITHER, {"uaa.E001"}),
        # A backslash is no URL character (RFC 3986 §2); browsers read it as "/", Python as part of the host.
        ("http://evil.com\\@127.0.0.1", HATCH, {"uaa.E001"}),
        ("http://127.0.0.1\\.evil.com", HATCH, {"uaa.E001", "uaa.E002"}),
        # OpenID Connect Discovery 1.0 §3, RFC 8414 §2: no query or fragment components, even empty ones.
        ("http://127.0.0.1/?x=1", HATCH, {"uaa.E001"}),
        ("http://127.0.0.1/#top", HATCH, {"uaa.E001"}),
        ("https://id.example.com?", NEITHER, {"uaa.E001"}),
        ("https://id.example.com/#", NEITHER, {"uaa.E001"}),
        # A trailing dot names the same host in another spelling: an issuer no relying party has configured,
        # and "localhost." goes to the DNS resolver on some systems.
        ("https://id.example.com.", NEITHER, {"uaa.E001"}),
        ("http://localhost.", HATCH, {"uaa.E001", "uaa.E002"}),
        ("http://127.0.0.1.", HATCH, {"uaa.E001", "uaa.E002"}),
        # The scheme is case-insensitive (RFC 3986 §3.1) but the issuer is compared exactly, and "HTTPS://" is
        # not what the secure-cookie, HSTS and redirect switch (settings.SECURE) looks for: refused.
        ("HTTPS://id.example.com", NEITHER, {"uaa.E001"}),
        ("Https://id.example.com", NEITHER, {"uaa.E001"}),
        ("HTTP://127.0.0.1", HATCH, {"uaa.E001"}),
        # The host's case is not (RFC 3986 §3.2.2: it is the same host; test_allowed_hosts.py relies on it).
        ("https://ID.example.com", NEITHER, set()),
        ("http://LOCALHOST:8000", HATCH, set()),
        # http on loopback without DEBUG or the escape hatch: refused as before.
        ("http://127.0.0.1:8000", NEITHER, {"uaa.E001"}),
        ("http://localhost", NEITHER, {"uaa.E001"}),
        # Red team: Python's urlsplit ignores what follows "]", so these read as the host ::1 (browsers refuse
        # them); an authority is a host and an optional non-empty port, nothing else (RFC 3986 §3.2).
        ("http://[::1].evil.com:18433", HATCH, {"uaa.E001"}),
        ("http://[::1].evil.com:18433", DEBUG_ONLY, {"uaa.E001"}),
        ("http://[::1]evil.com", HATCH, {"uaa.E001"}),
        ("http://[::1]x:80", HATCH, {"uaa.E001"}),
        ("http://[::1]]", HATCH, {"uaa.E001"}),
        ("https://[2001:db8::1]x", NEITHER, {"uaa.E001"}),
        # A zone ID names an interface of this machine (RFC 6874): no issuer for anyone else.
        ("http://[::1%25eth0]:8000", HATCH, {"uaa.E001"}),
        # An empty port is the default port spelt another way: one issuer, one spelling.
        ("http://127.0.0.1:", HATCH, {"uaa.E001"}),
        ("https://id.example.com:", NEITHER, {"uaa.E001"}),
        # Dot segments (RFC 3986 §5.2.4) are removed by whoever normalises the URL: another spelling.
        ("https://id.example.com/a/../b", NEITHER, {"uaa.E001"}),
        ("https://id.example.com/./uaa", NEITHER, {"uaa.E001"}),
        ("https://id.example.com/..", NEITHER, {"uaa.E001"}),
        ("https://id.example.com/a..b", NEITHER, set()),
        # What stays possible: https anywhere; http on loopback with DEBUG or the escape hatch.
        ("https://id.example.com", NEITHER, set()),
        ("https://id.example.com/uaa", NEITHER, set()),
        ("https://id.example.com:8443/tenant/a", NEITHER, set()),
        ("https://127.0.0.1:8443", NEITHER, set()),
        ("http://127.0.0.1", HATCH, set()),
        ("http://127.0.0.1:8000", HATCH, set()),
        ("http://127.1.2.3:8000", HATCH, set()),
        ("http://[::1]:8000", HATCH, set()),
        ("http://[0:0:0:0:0:0:0:1]:8000", HATCH, set()),
        ("https://[2001:db8::1]:8443", NEITHER, set()),
        ("http://localhost:8000", DEBUG_ONLY, set()),
        ("http://localhost:8000", HATCH, set()),
        # Django's test client's host (the test settings' issuer): no resolver answers for it.
        ("http://testserver", HATCH, set()),
    ],
)
def test_the_issuer_check(settings, issuer, mode, expected):
    from uaa.checks import check_settings

    settings.UAA_ISSUER = issuer
    settings.DEBUG = mode["debug"]
    settings.UAA_ALLOW_HTTP_ISSUER = mode["hatch"]
    found = {message.id for message in check_settings()}
    assert found == expected, [m.msg for m in check_settings()]


def test_an_http_issuer_off_loopback_stops_every_process_even_with_the_escape_hatch(tmp_path):
    """Not only ``manage.py check``: gunicorn's workers and Celery (``django.setup()``) refuse it too, with
    DEBUG as without (base_env sets UAA_ALLOW_HTTP_ISSUER)."""
    for extra in ({}, {"DEBUG": "1"}):
        result = _start_django(
            tmp_path, UAA_ISSUER="http://id.example.com", ALLOWED_HOSTS="id.example.com", **extra
        )
        assert result.returncode != 0, extra
        assert "uaa.E002" in result.stderr and "loopback" in result.stderr, result.stderr[-1500:]
        check = _start_django(tmp_path, "manage.py", "check", UAA_ISSUER="http://127.0.0.1.evil.com", **extra)
        assert check.returncode != 0 and "uaa.E002" in check.stderr, extra
    loopback = _start_django(tmp_path, "manage.py", "check", UAA_ISSUER="http://[::1]:8000")
    assert loopback.returncode == 0, loopback.stderr[-1500:]
