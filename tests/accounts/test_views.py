"""Password reset by e-mail (accounts/urls.py, accounts/views.py, templates/registration/):
the whole flow through the mail, and no answer that tells which addresses have accounts."""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.core import mail
from django.test import Client

from accounts.services import user_create
from tests.conftest import PASSWORD

NEW_PASSWORD = "a-brand-new-passphrase-42"
LINK = re.compile(r"https?://testserver(/password-reset/[^/\s]+/[^/\s]+/)")


@pytest.fixture
def alice_mail(alice):
    alice.email = "alice@example.org"
    alice.save()
    return alice


def request_reset(client: Client, email: str):
    return client.post("/password-reset/", {"email": email})


def link_in(message) -> str:
    found = LINK.search(message.body)
    assert found, message.body
    return found.group(1)


def test_the_login_page_links_to_the_password_reset(client, db):
    page = client.get("/login/").content.decode()
    assert 'href="/password-reset/"' in page and "Forgot your password?" in page


def test_a_user_resets_the_password_through_the_mailed_link_and_logs_in_with_the_new_one(client, alice_mail, settings):
    assert "Reset your password" in client.get("/password-reset/").content.decode()
    response = request_reset(client, "ALICE@example.org")  # addresses match without regard to case
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert "Check your e-mail" in client.get(response["Location"]).content.decode()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.org"]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert message.subject == "Reset your prefdata password"
    link = link_in(message)

    # Django swaps the token in the address for one kept in the session (no token in Referer).
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    set_password_url = form_page.redirect_chain[-1][0]
    assert "Choose a new password" in form_page.content.decode()
    assert 'name="new_password1"' in form_page.content.decode()

    mismatch = client.post(set_password_url, {"new_password1": NEW_PASSWORD, "new_password2": "something-else"})
    assert mismatch.status_code == 200 and "didn’t match" in mismatch.content.decode()
    done = client.post(set_password_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    assert "Password changed" in client.get(done["Location"]).content.decode()

    fresh = Client()
    assert fresh.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 200  # the old one fails
    assert fresh.post("/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302
    assert fresh.get("/").status_code == 200

    # The link worked once.
    again = Client().get(link, follow=True)
    assert "This link is not valid" in again.content.decode()


def test_a_known_and_an_unknown_address_get_the_same_answer(client, alice_mail):
    known = request_reset(client, "alice@example.org")
    unknown = request_reset(client, "nobody@example.org")
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert [m.to for m in mail.outbox] == [["alice@example.org"]]


@pytest.mark.parametrize(
    "who",
    [
        pytest.param({"username": "nomail", "email": ""}, id="no e-mail address"),
        pytest.param({"username": "gone", "email": "gone@example.org", "is_active": False}, id="deactivated"),
        pytest.param({"username": "ext.vendor", "email": "ext@example.org", "password": None}, id="cannot log in"),
    ],
)
def test_an_account_that_cannot_reset_gets_no_mail_and_the_same_answer(client, db, who):
    user_create(**{"password": PASSWORD, **who})
    response = request_reset(client, who["email"] or "nomail@example.org")
    assert (response.status_code, response["Location"]) == (302, "/password-reset/sent/")
    assert mail.outbox == []


def test_an_empty_address_matches_nobody_not_even_accounts_without_one(client, db):
    user_create(username="nomail", password=PASSWORD, email="")
    response = request_reset(client, "")
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert mail.outbox == []


def test_a_forged_link_is_refused(client, alice_mail):
    page = client.get("/password-reset/MQ/bad-token/", follow=True).content.decode()
    assert "This link is not valid" in page
    assert 'name="new_password1"' not in page


def test_a_completed_reset_lifts_the_login_lockout(client, alice_mail, settings):
    settings.AXES_ENABLED = True
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": "alice", "password": "wrong-password"})
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 429

    request_reset(client, "alice@example.org")
    set_password_url = client.get(link_in(mail.outbox[0]), follow=True).redirect_chain[-1][0]
    client.post(set_password_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert client.post("/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302
