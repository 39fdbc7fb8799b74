"""Signals other parts of UAA hook into; the audit ledger listens here (tokens/receivers.py).

``signing_key_changed(sender=SigningKey, event, key, at, **extra)`` is sent inside the transaction
that changes the key, for the events ``published``, ``activated``, ``retired``, ``expired`` and
``revoked``: a receiver that writes a record in the same database commits or rolls back with it.
``extra`` may hold ``reason`` and ``actor`` (the ``sub`` of the admin who asked for the change).
"""

from django.dispatch import Signal

signing_key_changed = Signal()
