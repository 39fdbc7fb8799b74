"""The session engine: Django's database sessions, for session keys Django could have issued only.

Django makes a session key of 32 characters from ``[a-z0-9]`` (``VALID_KEY_CHARS``). The cookie is the
client's to write, and Django's own check only wants 8 characters or more, so a cookie of NUL characters
went to the database as the key to look up: PostgreSQL refuses NUL in text (DataError), and every page
that reads the session (the JWKS, discovery and /healthz included, through the middleware) answered 500.
Any other key names no session: the request goes on without one, as with no cookie at all.
"""

from __future__ import annotations

import re

from django.contrib.sessions.backends import db

# What django.contrib.sessions.backends.base.SessionBase._get_new_session_key makes (32 of [a-z0-9]); 8-40
# so that keys of other lengths made by Django versions past and future (the column is varchar(40)) still do.
SESSION_KEY = re.compile(r"[a-z0-9]{8,40}")


class SessionStore(db.SessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return isinstance(key, str) and SESSION_KEY.fullmatch(key) is not None
