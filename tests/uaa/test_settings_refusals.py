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
    from uaa.checks import is_loopback_host, problems

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
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and is_loopback_host("a.localhost")
    assert not is_loopback_host("testserver.example") and not is_loopback_host("10.0.0.1")


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
