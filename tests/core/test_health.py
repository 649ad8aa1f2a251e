"""/healthz (core/health.py, core/views.py): each dependency reported on its own, 503
when one the deployment needs is down - checked with a real redis-server that stops
and a real Celery worker that comes and goes."""

from __future__ import annotations

import os
import time

import pytest
from django.db import DatabaseError

from core.health import workers_forget
from tests.celery_worker import celery_worker
from tests.redis_server import on_private_redis, private_redis  # noqa: F401 (fixtures)


def health(client, query: str = ""):
    response = client.get("/healthz" + query)
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def statuses(body: dict) -> dict[str, tuple[str, bool]]:
    return {name: (check["status"], check["required"]) for name, check in body["checks"].items()}


def test_healthz_answers_without_login_and_reports_every_dependency(client, db, settings):
    settings.HEALTHZ_REQUIRE = ["database"]
    code, body = health(client)
    assert code == 200 and body["status"] == "ok"
    checks = statuses(body)
    assert checks["database"] == ("ok", True)
    # The test settings run tasks in-process: no broker, no workers to ask.
    assert checks["broker"] == ("off", False) and checks["workers"] == ("off", False)
    assert checks["cache"][0] in ("ok", "off")  # Redis when REDIS_URL is set, else local memory


def test_healthz_answers_503_naming_the_database_when_it_is_down(client, db, monkeypatch):
    class DownDatabase:
        def cursor(self):
            raise DatabaseError('connection to server at "10.0.0.5", port 5432 failed')

    monkeypatch.setattr("core.health.connection", DownDatabase())
    code, body = health(client)
    assert code == 503 and body["status"] == "error"
    assert body["checks"]["database"] == {"status": "down", "error": "DatabaseError", "required": True}
    assert "10.0.0.5" not in str(body)  # a public page: the error's class, never its message


def test_an_unknown_check_is_a_400_naming_the_choices(client, db):
    code, body = health(client, "?require=database,mystery")
    assert code == 400
    assert "mystery" in body["errors"]["require"][0] and "workers" in body["errors"]["require"][0]


def test_with_redis_stopped_healthz_answers_503_and_says_the_cache_and_the_broker_are_down(
    client, db, on_private_redis
):
    code, body = health(client)
    assert code == 200
    checks = statuses(body)
    assert checks["database"] == checks["cache"] == checks["broker"] == ("ok", True)
    assert checks["workers"] == ("down", False)  # no worker on this broker: reported, not required
    assert body["status"] == "degraded"

    on_private_redis.stop()
    code, body = health(client)
    assert code == 503 and body["status"] == "error"
    checks = statuses(body)
    assert checks["database"] == ("ok", True)
    assert checks["cache"] == checks["broker"] == ("down", True)
    assert checks["workers"] == ("unknown", False)
    assert body["checks"]["cache"]["error"] == "ConnectionError"

    # The web container's own check (docker/healthcheck.py) needs the database only.
    code, body = health(client, "?require=database")
    assert code == 200 and body["status"] == "degraded"

    on_private_redis.start()
    deadline = time.monotonic() + 20
    while (code := health(client)[0]) != 200:  # the cache's breaker lets the next PING through in 0.5 s
        assert time.monotonic() < deadline, f"still {code} after Redis came back"
        time.sleep(0.1)


def test_the_workers_are_counted_per_queue_and_required_only_when_asked(client, on_private_redis, db):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test", REDIS_URL=on_private_redis.url, CELERY_TASK_ALWAYS_EAGER="0"
    )
    code, body = health(client, "?require=database,workers")
    assert code == 503 and body["checks"]["workers"]["status"] == "down"

    with celery_worker("default", env) as worker:
        deadline = time.monotonic() + 60
        while True:
            workers_forget()  # each process keeps the answer of a broadcast for a few seconds
            code, body = health(client, "?require=database,workers")
            if code == 200:
                break
            assert worker.process.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, f"the worker never answered: {body}"
            time.sleep(0.5)
        workers = body["checks"]["workers"]
        assert workers == {
            "status": "ok",
            "workers": 1,
            "queues": {"default": 1, "gpu": 0},
            "required": True,
        }

    workers_forget()
    code, body = health(client, "?require=database,workers")
    assert code == 503 and body["checks"]["workers"]["status"] == "down"
    code, body = health(client)  # not required by default
    assert code == 200 and body["status"] == "degraded"


@pytest.mark.parametrize("query", ["?require=", "?require=database"])
def test_a_probe_may_require_less_than_the_settings(client, db, settings, monkeypatch, query):
    settings.HEALTHZ_REQUIRE = ["database", "cache"]
    monkeypatch.setattr("core.health.cache_check", lambda: {"status": "down", "error": "ConnectionError"})
    assert health(client)[0] == 503
    code, body = health(client, query)
    assert code == 200 and body["status"] == "degraded"
    assert body["checks"]["cache"] == {"status": "down", "error": "ConnectionError", "required": False}
