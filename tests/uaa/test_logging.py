"""Logs never carry secrets or whole tokens (a second line of defence behind careful call sites)."""

from __future__ import annotations

import json
import logging

from django.test import RequestFactory

from uaa.logging import JsonFormatter, RedactSecretsFilter

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def render(message: str, *args: object, **extra: object) -> str:
    record = logging.LogRecord("test", logging.ERROR, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    RedactSecretsFilter().filter(record)
    return JsonFormatter().format(record)


def test_a_logged_request_shows_method_and_path_but_not_its_query_string():
    request = RequestFactory().get(f"/oauth/logout?id_token_hint={JWT}&state=abc")
    line = render("Internal Server Error: %s", "/oauth/logout", request=request, status_code=500)
    assert JWT not in line
    assert "id_token_hint" not in line
    assert json.loads(line)["request"] == "GET /oauth/logout"


def test_secret_keys_in_extra_fields_are_redacted():
    line = json.loads(render("oauth.event", client_secret="s3cret", token=JWT, client_id="abc"))
    assert line["client_secret"] == "[redacted]"
    assert line["token"] == "[redacted]"
    assert line["client_id"] == "abc"


def test_secrets_and_jwts_inside_free_text_are_masked():
    text = f"failed with code=abc123 refresh_token=r-1 id_token_hint={JWT} Authorization: Bearer xyz.abc"
    line = render(text)
    for secret in ("abc123", "r-1", JWT, "xyz.abc"):
        assert secret not in line
