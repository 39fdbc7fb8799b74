"""The enrollment page embeds the WebAuthn options as JSON; a crafted display name stays inside them.

Attacker: a user who chose their own name (``</script><img src=x>``). They must not end the options'
<script> element early and inject markup into the page (CSP stops scripts, not HTML: a form, a link
or an image pointing elsewhere would still render).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from http import HTTPStatus

from django.test import Client as HttpClient

from tests.conftest import ENROLL, LOGIN
from tests.factories import PASSWORD, UserFactory

NAME = "</script><img src=x>"


class Page(HTMLParser):
    """The elements of a page as a browser's tokenizer sees them, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs).get("id") or ""
            self.scripts[self._script] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] += data


def test_a_display_name_with_a_closing_script_tag_stays_inside_the_options(db):
    """HTML §13.1.2.6: a script element's text ends at the first "</script"; the JSON must never hold one.
    W3C WebAuthn §5.4.3: ``user.displayName`` is the name the user chose, shown back to them."""
    user = UserFactory(given_name=NAME, family_name="", mfa=False)
    http = HttpClient()
    assert http.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == ENROLL
    response = http.get(ENROLL)
    assert response.status_code == HTTPStatus.OK
    page = Page()
    page.feed(response.content.decode())
    assert not [tag for tag, _ in page.tags if tag == "img"]
    options = json.loads(page.scripts["webauthn-options"])
    assert options["user"]["displayName"] == NAME
    [script] = [
        attrs for tag, attrs in page.tags if tag == "script" and attrs.get("id") == "webauthn-options"
    ]
    assert script["type"] == "application/json"
