"""Redis stopped under an annotator at work (a real, private redis-server under the cache
and the broker): the workspace in a real browser goes on as usual (core/cache.py)."""

from __future__ import annotations

import pytest

from annotation.models import Judgment
from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM, wait_until
from tests.e2e.test_annotate_browser import quiet, saved_and_moved_on, seed, shown
from tests.redis_server import on_private_redis, private_redis  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]


def test_an_annotator_keeps_judging_in_the_browser_when_redis_stops(live_server, page, alice, round_, on_private_redis):
    seed(round_)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/annotate/{round_.project.slug}/")
    wait_until(page, "document.getElementById('workspace').dataset.prefetch === 'ready'")
    assert on_private_redis.client().keys("private:*")  # the live server caches roles and the project there
    on_private_redis.stop()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    first = shown(page)
    for key in ("1", "w"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    second = saved_and_moved_on(page, first)
    for key in ("2", "q"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    third = saved_and_moved_on(page, second)
    quiet(page)

    assert len({first, second, third}) == 3
    assert sorted(Judgment.objects.values_list("assignment_id", flat=True)) == sorted([int(first), int(second)])
    assert not page.js_errors, page.js_errors
