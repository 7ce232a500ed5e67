"""Sign-in brute-force protection (django-axes) on both login pages."""

import pytest
from django.test import Client
from django.urls import reverse

from projects.tests.factories import UserFactory


def _user(**kw):
    user = UserFactory(username="alice", **kw)
    user.set_password("right-password-1")
    user.save()
    return user


@pytest.mark.parametrize("page", ["login", "admin:login"])
def test_it_locks_a_user_out_after_repeated_failures_on_both_login_pages(db, settings, page):
    _user(is_staff=True, is_superuser=True)
    c = Client()
    url = reverse(page)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert c.post(url, {"username": "alice", "password": "wrong"}).status_code == 200
    assert c.post(url, {"username": "alice", "password": "wrong"}).status_code == 429
    # Locked: even the right password is refused now, from this address.
    r = c.post(url, {"username": "alice", "password": "right-password-1"})
    assert r.status_code == 429 and "_auth_user_id" not in c.session
    assert "Too many failed sign-ins" in r.content.decode()
    # Another address is not locked out by this one's failures.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post(url, {"username": "alice", "password": "right-password-1"}).status_code == 302


def test_it_resets_the_failure_count_on_success(db, settings):
    _user()
    c = Client()
    url = reverse("login")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        c.post(url, {"username": "alice", "password": "wrong"})
    assert c.post(url, {"username": "alice", "password": "right-password-1"}).status_code == 302
    c.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert c.post(url, {"username": "alice", "password": "wrong"}).status_code == 200
    assert c.post(url, {"username": "alice", "password": "right-password-1"}).status_code == 302
