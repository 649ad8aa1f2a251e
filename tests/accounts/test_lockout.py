"""Login lockout (accounts/lockout.py, django-axes configured in config/settings.py):
failures counted per username and address, in the database, on the site's login and the
admin's alike; the login page explains a lockout."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.lockout import client_ip
from tests.conftest import PASSWORD

LIMIT = 5


@pytest.fixture(autouse=True)
def _axes_on(settings):
    """The test settings switch axes off (the test client logs in without a request)."""
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = LIMIT


def log_in(client: Client, username: str, password: str, path: str = "/login/", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def fail(client: Client, username: str, times: int, **extra) -> None:
    for _ in range(times):
        response = log_in(client, username, "wrong-password", **extra)
        assert response.status_code == 200, response.status_code
        assert "correct username and password" in response.content.decode()


def lock_out(client: Client, username: str, **extra) -> None:
    fail(client, username, LIMIT - 1, **extra)
    assert log_in(client, username, "wrong-password", **extra).status_code == 429


def test_a_user_and_address_are_locked_out_after_the_failure_limit_even_with_the_right_password(client, alice):
    fail(client, "alice", LIMIT - 1)
    locked = log_in(client, "alice", "wrong-password")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed logins" in page and "15 minutes" in page
    assert 'name="username"' in page and 'value="alice"' in page  # still the login page, not a bare 403
    assert "Forgot your password?" in page
    assert int(locked["Retry-After"]) == 15 * 60

    right = log_in(client, "alice", PASSWORD)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_user_and_address(client, alice, bob):
    lock_out(client, "alice")
    assert log_in(client, "alice", PASSWORD).status_code == 429
    # bob, from the same address, and alice from another one are not affected.
    assert log_in(Client(), "bob", PASSWORD).status_code == 302
    assert log_in(Client(REMOTE_ADDR="10.0.0.7"), "alice", PASSWORD).status_code == 302


def test_the_lockout_ends_after_the_cool_off_period(client, alice, settings):
    lock_out(client, "alice")
    assert log_in(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_a_successful_login_clears_the_earlier_failures(client, alice):
    fail(client, "alice", LIMIT - 1)
    assert log_in(client, "alice", PASSWORD).status_code == 302
    client.post("/logout/")
    fail(client, "alice", LIMIT - 1)
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_the_admin_login_is_locked_out_too_and_says_so(client, db):
    from accounts.services import user_create

    user_create(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    for _ in range(LIMIT - 1):
        assert log_in(client, "root", "wrong-password", path="/admin/login/").status_code == 200
    locked = log_in(client, "root", "wrong-password", path="/admin/login/")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed logins" in page
    assert 'name="next" value="/admin/"' in page
    # The count is shared: the site's login is locked for the same pair.
    assert log_in(client, "root", PASSWORD).status_code == 429


def test_the_lockout_holds_when_redis_is_down(client, alice, settings):
    # Django's plain Redis cache on a port where nothing listens: any use of it would fail.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"}
    }
    with pytest.raises(RedisConnectionError):
        cache.get("probe")
    lock_out(client, "alice")
    assert log_in(client, "alice", PASSWORD).status_code == 429
    assert (
        AccessAttempt.objects.get(username="alice").failures_since_start == LIMIT
    )  # the try while locked is not counted


def test_the_address_is_remote_addr_without_a_trusted_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    request = RequestFactory().post("/login/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_ip(request) == "192.0.2.1"


def test_behind_trusted_proxies_the_address_is_the_one_they_appended(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # The client wrote "198.51.100.1" itself; our proxy appended the address it saw.
    spoofed = RequestFactory().post("/login/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9")
    assert client_ip(spoofed) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(spoofed) == "198.51.100.1"
    settings.TRUSTED_PROXY_COUNT = 3  # fewer entries than proxies: misconfigured, fall back
    assert client_ip(spoofed) == "10.0.0.2"


def test_guesses_with_a_fresh_forged_address_each_time_are_still_counted_together(client, alice, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    for i in range(LIMIT):
        log_in(client, "alice", "wrong-password", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.9")
    assert log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.9").status_code == 429


def test_tries_during_a_lockout_do_not_extend_it(client, alice, settings):
    lock_out(client, "alice")
    locked_at = AccessAttempt.objects.get(username="alice").attempt_time
    for password in ("wrong-password", PASSWORD, "wrong-again"):
        assert log_in(client, "alice", password).status_code == 429
    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.attempt_time == locked_at and attempt.failures_since_start == LIMIT
    AccessAttempt.objects.update(attempt_time=locked_at - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert log_in(client, "alice", PASSWORD).status_code == 302
