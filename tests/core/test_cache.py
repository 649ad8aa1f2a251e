"""Redis is optional for the site (core/cache.py): a real, private redis-server is
stopped under the cache, and annotators keep judging through the API and the pages."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.services import api_token_create, api_token_revoke
from annotation.models import Judgment
from core.cache import cache_is_down
from tests.annotation.test_annotate_views import HX, shown_id
from tests.annotation.test_assignment import fill
from tests.redis_server import on_private_redis, private_redis  # noqa: F401 (fixtures)


def wait_until_reachable(deadline_s: float = 20) -> None:
    """The breaker lets the next operation through once its window is over."""
    deadline = time.monotonic() + deadline_s
    while cache_is_down():
        assert time.monotonic() < deadline, "the cache's breaker never closed"
        time.sleep(0.05)


def raw_keys(server) -> set[str]:
    return {key.decode() for key in server.client().keys("private:*")}


# --- The backend ------------------------------------------------------------------------


def test_a_stopped_redis_is_an_empty_cache_reads_miss_and_writes_do_nothing(on_private_redis):
    cache.set("answer", 42, 60)
    assert cache.get("answer") == 42 and not cache_is_down()

    on_private_redis.stop()
    assert cache.get("answer", "from the database") == "from the database"
    assert cache_is_down()
    cache.set("answer", 43, 60)
    cache.set_many({"a": 1, "b": 2}, 60)
    assert cache.get_many(["answer", "a"]) == {}
    assert cache.has_key("answer") is False
    assert cache.touch("answer", 60) is False
    assert cache.delete("answer") is False
    cache.delete_many(["a", "b"])
    with pytest.raises(ValueError, match="not found"):
        cache.incr("answer")


def test_a_redis_that_stops_answering_times_out_and_counts_as_down(on_private_redis):
    cache.set("answer", 42, 60)
    on_private_redis.client().execute_command("CLIENT", "PAUSE", "3000", "ALL")
    assert cache.get("answer", "from the database") == "from the database"  # after the socket timeout
    assert cache_is_down()


def test_while_the_breaker_is_open_redis_is_not_asked_then_it_is_again(on_private_redis, settings):
    settings.CACHES = {"default": {**settings.CACHES["default"], "OPTIONS": {"socket_timeout": 1.0, "DOWN_SECONDS": 3}}}
    cache.set("answer", 42, 60)
    on_private_redis.stop()
    assert cache.get("answer") is None  # the breaker opens for 3 s
    on_private_redis.start()  # the append-only file brings the entry back
    assert on_private_redis.client().exists("private:1:answer")
    assert cache.get("answer") is None and cache_is_down()  # not asked: within the window
    wait_until_reachable()
    assert cache.get("answer") == 42


def test_add_is_a_lock_of_this_process_while_redis_is_down(on_private_redis):
    on_private_redis.stop()
    # A guard that always said yes would start the guarded work on every request, one
    # that always said no would never start it: held per process, with its timeout.
    assert cache.add("refresh-lock", 1, 60) is True
    assert cache.add("refresh-lock", 1, 60) is False
    cache.delete("refresh-lock")
    assert cache.add("refresh-lock", 1, 60) is True
    assert cache.add("short-lock", 1, 1) is True
    time.sleep(1.1)
    assert cache.add("short-lock", 1, 1) is True  # expired

    on_private_redis.start()
    wait_until_reachable()
    assert cache.add("refresh-lock", 1, 60) is True  # Redis holds the locks again
    assert cache.add("refresh-lock", 1, 60) is False
    assert "private:1:refresh-lock" in raw_keys(on_private_redis)


def test_a_delete_that_could_not_reach_redis_is_made_once_it_is_back(on_private_redis):
    cache.set("apitoken:revoked", "a cached look-up", 60)
    cache.set("kept", "still good", 60)
    on_private_redis.stop()
    cache.delete("apitoken:revoked")  # lost: Redis is away
    on_private_redis.start()
    assert "private:1:apitoken:revoked" in raw_keys(on_private_redis)  # restored from its file

    wait_until_reachable()
    assert cache.get("kept") == "still good"  # the first operation that reaches Redis replays it
    assert "private:1:apitoken:revoked" not in raw_keys(on_private_redis)
    assert cache.get("apitoken:revoked") is None


# --- The site without Redis ----------------------------------------------------------------


def api_next(api: APIClient, project) -> dict:
    response = api.post(f"/api/v1/projects/{project.slug}/assignments/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["pair"]


def api_judge(api: APIClient, pair: dict) -> None:
    response = api.post(
        f"/api/v1/assignments/{pair['assignment']}/judgment/", {"choice": "left", "strength": "better"}, format="json"
    )
    assert response.status_code == 201, response.content


def test_annotators_keep_judging_through_the_api_and_the_pages_while_redis_is_stopped(
    on_private_redis, client, alice, bob, lee, round_
):
    project = round_.project
    project.require_safety = False
    project.save()
    fill(round_, 8)
    _, key = api_token_create(user=alice, name="script")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    api_judge(api, api_next(api, project))  # token, roles and project now cached in Redis
    assert raw_keys(on_private_redis)

    on_private_redis.stop()
    # The API: the token authenticates from the database, next -> judge goes on.
    for _ in range(2):
        api_judge(api, api_next(api, project))
    # The pages: the workspace shows a pair, a submit answers with the next one.
    client.force_login(bob)
    page = client.get(reverse("annotate", args=[project.slug]))
    assert page.status_code == 200
    shown = shown_id(page.content.decode())
    assert shown is not None
    submitted = client.post(reverse("annotate-submit", args=[project.slug, shown]), {"choice": "tie"}, **HX)
    assert submitted.status_code == 200
    assert shown_id(submitted.content.decode()) not in (None, shown)
    nxt = client.get(reverse("annotate-next", args=[project.slug]), **HX)
    assert nxt.status_code == 200
    # The lead's pages read the database too.
    client.force_login(lee)
    assert client.get(reverse("project-detail", args=[project.slug])).status_code == 200
    assert client.get(reverse("dashboard", args=[project.slug])).status_code == 200
    assert Judgment.objects.count() == 4

    on_private_redis.start()
    wait_until_reachable()
    api_judge(api, api_next(api, project))
    assert Judgment.objects.count() == 5


def test_a_token_revoked_while_redis_was_down_is_refused_once_redis_is_back(on_private_redis, alice, round_):
    token, key = api_token_create(user=alice, name="script")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/me/").status_code == 200  # the look-up is cached in Redis now

    on_private_redis.stop()
    api_token_revoke(token=token)
    assert api.get("/api/v1/me/").status_code == 401  # read from the database

    on_private_redis.start()  # with the cached look-up from before the outage
    wait_until_reachable()
    assert api.get("/api/v1/me/").status_code == 401
