"""The dashboard's filters refuse dates no range can be built from (insights/filters.py):
``until=9999-12-31`` ends at a midnight after the last date there is."""

from __future__ import annotations

import pytest
from django.urls import reverse

from insights.views import CSV_TABLES, SECTIONS
from tests.conftest import token_client
from tests.insights.test_views import api, judged, page_url  # noqa: F401  # judged is a fixture

pytestmark = pytest.mark.django_db

OUT_OF_RANGE = [("until", "9999-12-31"), ("since", "9999-12-31"), ("since", "0001-01-01"), ("until", "0001-01-01")]
STATS = ["stats-history", "stats-round", "stats-ratings", "stats-agreement", "stats-quality"]


def test_every_stats_endpoint_answers_a_date_out_of_range_with_a_400_naming_it(judged, lee):
    client = token_client(lee)
    for field, value in OUT_OF_RANGE:
        for name in STATS:
            response = client.get(api(name, judged, **{field: value}))
            assert response.status_code == 400, (name, field, value)
            assert list(response.json()) == [field]


def test_the_dashboard_its_sections_and_downloads_refuse_a_date_out_of_range(client, judged, lee):
    client.force_login(lee)
    for field, value in OUT_OF_RANGE:
        response = client.get(page_url(judged, **{field: value}))
        assert response.status_code == 400
        assert "Pick a date" in response.content.decode()
        for section in SECTIONS:
            url = reverse("dashboard-section", args=[judged.slug, section]) + f"?{field}={value}"
            assert client.get(url).status_code == 400
        for table in CSV_TABLES:
            url = reverse("dashboard-csv", args=[judged.slug, table]) + f"?{field}={value}"
            assert client.get(url).status_code == 400


def test_the_first_and_last_dates_a_filter_takes_are_answered(judged, lee):
    client = token_client(lee)
    for field, value in (("since", "1900-01-01"), ("until", "9999-12-30")):
        for name in STATS:
            response = client.get(api(name, judged, **{field: value}))
            assert response.status_code == 200, (name, response.content)
