"""Signals of the sign-in and its throttling, for the layers above (uaa/metrics.py counts them).

``second_factor_failed(sender=User, method)`` is sent for each wrong second factor (``method``: the amr
value, ``otp`` or ``hwk``); a wrong password is Django's own ``user_login_failed``.
``lockout_started(sender=ThrottleCounter, key)`` is sent when a failure starts a lock on a throttle key
(accounts/throttling.py; the part of ``key`` before ``:`` says what is locked, the rest is a digest).
"""

from django.dispatch import Signal

second_factor_failed = Signal()
lockout_started = Signal()
