"""The SHA-256 checksum that stands for a token, code or assertion wherever one is stored or looked up.

django-oauth-toolkit keeps access and refresh tokens as this checksum only (``token_checksum``: the hex
SHA-256 of the token's UTF-8 bytes), UAA keeps spent authorization codes so (``RedeemedCode``), and audit
records hold it in place of the token (docs/audit-ledger.md). One function, so that a look-up and what was
stored never disagree.
"""

from __future__ import annotations

import hashlib


def sha256_hex(value: str | bytes) -> str:
    """The hex SHA-256 of ``value`` (of its UTF-8 bytes, for text)."""
    return hashlib.sha256(value.encode("utf-8") if isinstance(value, str) else value).hexdigest()
