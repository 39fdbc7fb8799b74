"""OAuth 2.0 Form Post Response Mode: the authorization response as a form the browser posts to the client.

§2: with ``response_mode=form_post`` the authorization response parameters "are encoded as HTML form
values that are auto-submitted in the User Agent, and thus are transmitted via the HTTP POST method to
the Client, with the result parameters being encoded in the body using the
application/x-www-form-urlencoded format"; the form's action is the client's redirect URI. The same holds
for error responses (§2: "Authorization Response parameters", which §4.1.2.1 errors are), whenever the
redirect URI is valid; an unknown client or redirect URI still gets the error page, never a form.

``AuthorizeView.redirect`` (uaa/oauth/views.py) turns each authorization response it would redirect —
the code, oauthlib's errors and UAA's own, each already carrying ``iss`` (uaa/oauth/rfc9207.py) — into
``split_response``'s action and fields, rendered by templates/oauth/form_post.html: no inline script
(static/uaa/form_post.js submits it, allowed by the CSP's ``script-src 'self'``), a submit button for a
browser without JavaScript, every value HTML-escaped by the template, and the page's usual headers
(``no-store``, no framing, no Referer to the client: uaa/middleware.py).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MODE = "form_post"
# The parameters of an authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207 §2): what the form
# carries. The rest of the URI's query is the registered redirect URI's own, which stays in the action.
RESPONSE_PARAMETERS = frozenset({"code", "state", "iss", "error", "error_description", "error_uri"})


def split_response(uri: str) -> tuple[str, list[tuple[str, str]]]:
    """The redirect URI to post to and the response's fields, from the redirect the query mode would send."""
    parts = urlsplit(uri)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    fields = [(name, value) for name, value in pairs if name in RESPONSE_PARAMETERS]
    own = [(name, value) for name, value in pairs if name not in RESPONSE_PARAMETERS]
    action = urlunsplit(parts._replace(query=urlencode(own), fragment=""))
    return action, fields
