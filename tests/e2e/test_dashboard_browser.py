"""The lead dashboard in a real browser: the demo project's win-rate chart is drawn."""

from __future__ import annotations

import pytest

from demo.seed import demo_seed_history
from tests.e2e.conftest import CHROMIUM, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "a-demo-password-for-tests"

# Pixels of the canvas that are not transparent: an empty canvas has none.
PAINTED = """id => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
  return painted;
}"""


def test_the_lead_opens_the_demo_dashboard_and_sees_the_win_rate_chart(live_server, page, artifacts):
    demo_seed_history(password=PASSWORD)

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "lee")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/projects/demo/")
    page.click("text=Dashboard: win rates, ratings, agreement, quality")
    page.wait_for_url(f"{live_server.url}/projects/demo/dashboard/")

    # Chart.js (vendored) drew the history chart: both rounds, with interval bands.
    page.wait_for_selector("#chart-history[data-drawn='true']")
    assert page.evaluate("typeof window.Chart") == "function"
    assert page.evaluate(PAINTED, "chart-history") > 2_000
    points = page.evaluate("Chart.getChart('chart-history').data.datasets.find(d => d.label === 'Win rate').data")
    assert len(points) == 2 and all(0.5 < p < 1 for p in points)
    band = page.evaluate("Chart.getChart('chart-history').data.datasets.find(d => d.label === '95% bootstrap').data")
    assert all(high > p for high, p in zip(band, points, strict=True))

    # The tag forest plot and the verdict bar are drawn too; the numbers are on the page.
    page.wait_for_selector("#chart-tags[data-drawn='true']")
    assert page.evaluate(PAINTED, "chart-tags") > 500
    headline = page.text_content("#section-round .stat-main .stat-value")
    assert headline.strip().endswith("%")
    assert page.is_visible("text=Bradley-Terry ratings across versions")
    assert page.locator("#section-ratings table[data-table='ratings'] th", has_text="demo-chat-v0").is_visible()
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    # A filter reloads with the narrowed numbers and the chart drawn again.
    page.select_option("#id_tag", "code")
    page.click("button:has-text('Apply')")
    page.wait_for_url("**/dashboard/?*tag=code*")
    page.wait_for_selector("#chart-history[data-drawn='true']")

    # The htmx poll replaces a section and the chart is drawn again in the new content.
    page.evaluate("document.getElementById('chart-history').dataset.drawn = 'stale'")
    page.evaluate(
        "htmx.ajax('GET', document.getElementById('section-summary').getAttribute('hx-get'), {target: '#section-summary', swap: 'outerHTML'})"
    )
    wait_until(
        page,
        "document.querySelector('#chart-history') && document.querySelector('#chart-history').dataset.drawn === 'true' && Chart.getChart('chart-history')",
    )
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts / "dashboard-filtered.png"), full_page=True)
    assert page.js_errors == []
