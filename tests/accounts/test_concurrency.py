"""Once means once across workers: TOTP codes, backup codes and failure counters under concurrent requests.

Each thread has its own database connection, as separate web workers would. On PostgreSQL the row locks
(SELECT ... FOR UPDATE) serialize them; SQLite serializes whole write transactions (BEGIN IMMEDIATE).
"""

import threading
import time

import pytest
from django.db import connections
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import throttling
from accounts.mfa import backup_codes, totp
from accounts.models import ThrottleCounter
from tests.factories import UserFactory

WORKERS = 6


def race(target, *args):
    """Run ``target(*args)`` in WORKERS threads released together; returns their results."""
    barrier = threading.Barrier(WORKERS)
    results, errors = [], []

    def work():
        try:
            barrier.wait()
            results.append(target(*args))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_one_totp_code_sent_by_several_workers_at_once_is_accepted_once():
    """RFC 6238 §5.2: the verifier MUST NOT accept the second attempt of the same OTP."""
    user = UserFactory()
    device = TOTPDevice.objects.get(user=user)
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits)
    generator.time = time.time()
    code = f"{generator.token():06d}"
    assert race(lambda: totp.verify(device=device, code=code)).count(True) == 1


@pytest.mark.django_db(transaction=True)
def test_one_backup_code_spent_by_several_workers_at_once_works_once():
    user = UserFactory()
    (code, *_rest) = backup_codes.generate_codes(user=user)
    assert race(lambda: backup_codes.use_code(user=user, code=code)).count(True) == 1
    assert backup_codes.remaining(user) == 9


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_are_all_counted(settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 100
    settings.UAA_THROTTLE_IP_FAILURES = 100
    race(lambda: throttling.record_failure(email="target@example.com", ip="192.0.2.1"))
    counter = ThrottleCounter.objects.get(key=throttling.account_key("target@example.com"))
    assert counter.failures == WORKERS
