"""The sign-in challenge page embeds the WebAuthn request options as JSON, escaped like the enrollment page's.

Attacker: someone who gets text of their choosing into the options (today they hold only the challenge, the
RP id and base64url credential ids, so nobody can; a future option such as a credential's stored transports
would open it). The JSON must never end its <script> element early, whatever it holds (HTML §13.1.2.6).
"""

from __future__ import annotations

import json

from django.template.loader import render_to_string

from tests.accounts.test_mfa_enroll_escaping import Page

PAYLOAD = "</script><img src=x>"


def test_options_holding_a_closing_script_tag_stay_inside_the_options():
    options = json.dumps({"challenge": "abc", "allowCredentials": [{"id": "x", "transports": [PAYLOAD]}]})
    html = render_to_string("accounts/mfa_challenge.html", {"webauthn_options": options, "action": "/x"})
    page = Page()
    page.feed(html)
    assert not [tag for tag, _ in page.tags if tag == "img"]
    parsed = json.loads(page.scripts["webauthn-options"])
    assert parsed["allowCredentials"][0]["transports"] == [PAYLOAD]
