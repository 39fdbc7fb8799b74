"""Template filters for data handed to scripts as JSON (Django's ``json_script`` does the escaping)."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def parsed_json(value: str) -> object:
    """A JSON document (such as py_webauthn's ``options_to_json``) as the value it encodes, for
    ``json_script``: ``{{ options|parsed_json|json_script:"id" }}`` embeds it with ``<``, ``>`` and ``&``
    escaped, so no string in it (a user's display name) can end the <script> element."""
    return json.loads(value)
