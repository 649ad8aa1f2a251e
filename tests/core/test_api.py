"""What an API client gets when something goes wrong on the server: always JSON, with a
status that says whose problem it is, and never a detail of the server's."""

from __future__ import annotations

import pytest
from django.db import DataError, OperationalError
from django.test import RequestFactory
from rest_framework.test import APIClient

from accounts import apis as accounts_apis
from core.api import DATABASE_UNAVAILABLE, page_not_found, server_error
from tests.conftest import token_client


def test_a_database_that_is_down_answers_503_in_json_with_a_retry_hint(alice, monkeypatch):
    def down(user):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setattr(accounts_apis, "user_roles", down)
    response = token_client(alice).get("/api/v1/me/")
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"detail": DATABASE_UNAVAILABLE}
    assert response.headers["Retry-After"] == "5"
    assert "5432" not in response.content.decode()


def test_a_value_the_database_refuses_is_the_clients_400_not_a_500(alice, monkeypatch):
    def refused(user):
        raise DataError("value too long for type character varying(200)")

    monkeypatch.setattr(accounts_apis, "user_roles", refused)
    response = token_client(alice).get("/api/v1/me/")
    assert response.status_code == 400
    assert response.json()["reason"] == "value too long for type character varying(200)"


def test_an_unexpected_error_is_a_json_500_that_says_nothing_of_the_server(alice, monkeypatch, caplog):
    def broken(user):
        raise RuntimeError("secret path /srv/app/settings.py")

    monkeypatch.setattr(accounts_apis, "user_roles", broken)
    client = token_client(alice)
    client.raise_request_exception = False
    response = client.get("/api/v1/me/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal error: it has been logged."}
    assert "secret" not in response.content.decode()
    assert any(record.exc_info and "secret path" in str(record.exc_info[1]) for record in caplog.records)


def test_the_test_client_still_raises_an_unexpected_error_so_tests_see_it(alice, monkeypatch):
    monkeypatch.setattr(accounts_apis, "user_roles", lambda user: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        token_client(alice).get("/api/v1/me/")


def test_an_unknown_api_address_is_a_json_404_and_a_page_address_an_html_one(alice, client):
    response = APIClient().get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    page = RequestFactory().get("/no-such-page/")
    assert page_not_found(page, Exception()).headers["Content-Type"].startswith("text/html")


def test_an_error_outside_any_api_view_under_api_is_json_too():
    response = server_error(RequestFactory().get("/api/v1/exports/"))
    assert response.status_code == 500 and response.headers["Content-Type"] == "application/json"
    assert server_error(RequestFactory().get("/dashboard/")).headers["Content-Type"].startswith("text/html")


def test_a_page_whose_database_is_down_is_a_503_saying_to_try_again_not_a_500(client, alice, monkeypatch):
    from django.contrib.sessions.backends.db import SessionStore

    client.force_login(alice)

    def down(self):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(SessionStore, "load", down)
    client.raise_request_exception = False
    response = client.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "try again in a few seconds" in response.content.decode()
    api = client.get("/api/v1/me/")
    assert api.status_code == 503 and api.json() == {"detail": DATABASE_UNAVAILABLE}
