"""The lead dashboard page, its htmx sections, CSV downloads and the statistics API."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from annotation.models import RoundStatus
from models_service.rounds import round_create
from models_service.services import model_version_get_or_create
from tests.conftest import tags_of, token_client
from tests.factories import BAD, CANT, NEW, OLD, TIE, Builder

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(project, round_, alice, bob):
    """Round 1 judged by alice and bob; round 2 (v2 → v3) judged by alice."""
    build = Builder(round_)
    verdicts = [NEW] * 9 + [OLD] * 4 + [TIE] * 2 + [BAD, CANT]
    for i, verdict in enumerate(verdicts):
        comparison = build.comparison(
            tags=("code",) if i % 3 == 0 else ("helpfulness", "=cmd|' /C calc'!A0"), turns=1 + i % 2
        )
        build.judge(comparison, alice, verdict, strength="better", safety="both_safe")
        build.judge(comparison, bob, verdicts[(i + 3) % len(verdicts)], strength="slightly")
    v3 = model_version_get_or_create(name="chat-v3")
    second = round_create(project=project, baseline=round_.candidate, candidate=v3, status=RoundStatus.OPEN)
    later = Builder(second)
    later.count = 100
    for verdict in [NEW, OLD, OLD, TIE]:
        later.judge(later.comparison(), alice, verdict)
    return project


def page_url(project, **params) -> str:
    url = reverse("dashboard", args=[project.slug])
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- Access ------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_login(client, project):
    response = client.get(page_url(project))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("user", ["lee", "maya"])
def test_leads_and_ml_engineers_see_the_dashboard(client, judged, user, request):
    client.force_login(request.getfixturevalue(user))
    assert client.get(page_url(judged)).status_code == 200


def test_annotators_may_not_see_the_dashboard(client, judged, alice):
    client.force_login(alice)
    assert client.get(page_url(judged)).status_code == 403
    assert client.get(reverse("dashboard-csv", args=[judged.slug, "history"])).status_code == 403
    assert client.get(reverse("dashboard-section", args=[judged.slug, "round"])).status_code == 403


def test_an_unknown_project_section_or_table_is_a_404(client, judged, lee):
    client.force_login(lee)
    assert client.get(page_url(type("P", (), {"slug": "nope"})())).status_code == 404
    assert client.get(reverse("dashboard-section", args=[judged.slug, "nope"])).status_code == 404
    assert client.get(reverse("dashboard-csv", args=[judged.slug, "nope"])).status_code == 404


# --- The page ----------------------------------------------------------------------------


def test_the_page_shows_counts_rates_policy_and_every_section(client, judged, lee):
    client.force_login(lee)
    response = client.get(page_url(judged, round=1))
    html = response.content.decode()

    assert response.status_code == 200
    # alice: 9 W, 4 L, 2 T, 1 BB, 1 CJ; bob's verdicts are a rotation of the same list:
    # 18 W, 8 L, 4 T, 2 BB, 2 CJ in all; N = 32, (18 + ½·6)/32 = 65.625%.
    assert 'data-win-rate="0.65625"' in html and "65.6%" in html
    for heading in (
        "Win rate of the new model",
        "Bradley-Terry ratings",
        "Agreement in",
        "Annotator quality",
        "By strength",
        "By tag",
        "By safety label",
        "By turns",
        "By annotator",
    ):
        assert heading in html, heading
    assert "“Both bad” counts as a tie" in html
    canvases = [attrs for tag, attrs in tags_of(html) if tag == "canvas"]
    assert {c["data-chart"] for c in canvases} == {"history", "verdicts", "forest"}
    scripts = [attrs.get("src", "") for tag, attrs in tags_of(html) if tag == "script"]
    assert any(s.endswith("vendor/chart.umd.min.js") for s in scripts)
    assert not any(s.startswith("http") for s in scripts)


def test_the_page_opens_on_the_latest_judged_round(client, judged, lee):
    client.force_login(lee)
    html = client.get(page_url(judged)).content.decode()
    # Round 2: 1 W, 2 L, 1 T → (1 + ½)/4.
    assert 'data-win-rate="0.375"' in html
    assert "chat-v3 (new) vs chat-v2 (old)" in html


def test_an_empty_project_shows_empty_states_not_errors(client, project, lee):
    client.force_login(lee)
    response = client.get(page_url(project))
    html = response.content.decode()
    assert response.status_code == 200
    assert "No rounds yet." in html
    assert "No version has been judged against another yet." in html


def test_a_round_without_judgments_says_so(client, round_, lee):
    client.force_login(lee)
    html = client.get(page_url(round_.project)).content.decode()
    assert "No judgments in this round yet." in html


def test_filters_are_validated_with_field_errors(client, judged, lee):
    client.force_login(lee)
    response = client.get(
        page_url(judged, round=9, since="2026-05-02", until="2026-05-01", annotator="abc", tag="nope")
    )
    html = response.content.decode()

    assert response.status_code == 400
    assert "Select a valid choice" in html
    assert "The end date must not be before the start date." in html
    assert "Some filters are not valid" in html


def test_filters_narrow_the_numbers(client, judged, lee, alice):
    client.force_login(lee)
    html = client.get(page_url(judged, round=1, annotator=alice.pk, tag="code")).content.decode()
    # alice on code prompts (i = 0, 3, 6, 9, 12, 15): NEW ×4 (0,3,6), OLD (9, 12), BB (15) → W 3, L 2, BB 1.
    assert 'data-win-rate="0.5833333333333334"' in html


def test_a_section_answers_htmx_polls_with_a_fragment(client, judged, lee):
    client.force_login(lee)
    response = client.get(
        reverse("dashboard-section", args=[judged.slug, "round"]) + "?round=1", HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()

    assert response.status_code == 200
    assert html.lstrip().startswith('<section class="card dash-section" id="section-round"')
    assert "<html" not in html
    section = next(attrs for tag, attrs in tags_of(html) if tag == "section")
    assert section["hx-trigger"] == "every 30s" and section["hx-get"].endswith("?round=1")
    assert "HX-Request" in response["Vary"]


def test_a_section_with_bad_filters_is_a_400(client, judged, lee):
    client.force_login(lee)
    response = client.get(reverse("dashboard-section", args=[judged.slug, "ratings"]) + "?since=yesterday")
    assert response.status_code == 400 and b"since" in response.content


def test_the_sections_poll_and_pick_up_new_judgments(client, judged, lee, bob, round_):
    client.force_login(lee)
    url = reverse("dashboard-section", args=[judged.slug, "round"]) + "?round=1"
    before = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-win-rate="0.65625"' in before

    build = Builder(round_)
    build.count = 500
    build.judge(build.comparison(), bob, OLD)

    after = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-win-rate="0.6363636363636364"' in after  # 21 / 33


# --- CSV ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table",
    [
        "history",
        "round",
        "strength",
        "tag",
        "safety",
        "turn",
        "annotator",
        "ratings",
        "win-matrix",
        "agreement",
        "agreement-pairs",
        "quality",
    ],
)
def test_every_table_downloads_as_csv(client, judged, lee, table):
    client.force_login(lee)
    response = client.get(reverse("dashboard-csv", args=[judged.slug, table]) + "?round=1")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f"{judged.slug}-{table}" in response["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) >= 2, rows


def test_csv_numbers_are_the_page_numbers(client, judged, lee):
    client.force_login(lee)
    rows = read_csv(client.get(reverse("dashboard-csv", args=[judged.slug, "history"])))
    header, first, second = rows[0], rows[1], rows[2]
    record = dict(zip(header, first, strict=True))
    assert (
        record["round"],
        record["wins"],
        record["losses"],
        record["ties"],
        record["both_bad"],
        record["cant_judge"],
    ) == ("1", "18", "8", "4", "2", "2")
    assert float(record["win_rate"]) == pytest.approx(0.65625)
    assert float(dict(zip(header, second, strict=True))["win_rate"]) == pytest.approx(0.375)


def test_csv_cells_cannot_smuggle_spreadsheet_formulas(client, judged, lee):
    client.force_login(lee)
    rows = read_csv(client.get(reverse("dashboard-csv", args=[judged.slug, "tag"]) + "?round=1"))
    labels = [row[0] for row in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in labels and not any(label.startswith("=") for label in labels)


def test_the_win_matrix_csv_header_of_model_names_cannot_smuggle_formulas_either(client, judged, lee):
    from models_service.models import ModelVersion

    ModelVersion.objects.filter(name="chat-v3").update(name='=HYPERLINK("http://x","v3")')
    client.force_login(lee)
    header = read_csv(client.get(reverse("dashboard-csv", args=[judged.slug, "win-matrix"])))[0]
    assert """'=HYPERLINK("http://x","v3")""" in header and not any(cell.startswith("=") for cell in header)


def test_csv_with_bad_filters_is_a_400_with_field_errors(client, judged, lee):
    client.force_login(lee)
    response = client.get(reverse("dashboard-csv", args=[judged.slug, "round"]) + "?round=abc")
    assert response.status_code == 400
    assert "round" in response.json()


# --- Links -------------------------------------------------------------------------------


def test_the_project_page_links_to_the_dashboard_for_leads(client, judged, lee):
    client.force_login(lee)
    html = client.get(reverse("project-detail", args=[judged.slug])).content.decode()
    assert reverse("dashboard", args=[judged.slug]) in html


def test_the_project_page_does_not_link_annotators_to_the_dashboard(client, judged, alice):
    client.force_login(alice)
    html = client.get(reverse("project-detail", args=[judged.slug])).content.decode()
    assert reverse("dashboard", args=[judged.slug]) not in html


# --- API ---------------------------------------------------------------------------------

STATS = ["stats-history", "stats-round", "stats-ratings", "stats-agreement", "stats-quality"]


def api(name: str, project, **params) -> str:
    url = reverse(f"insights_api:{name}", args=[project.slug])
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


@pytest.mark.parametrize("name", STATS)
def test_the_api_lets_leads_and_ml_engineers_read_and_refuses_annotators(judged, lee, maya, alice, name):
    assert token_client(lee).get(api(name, judged)).status_code == 200
    assert token_client(maya).get(api(name, judged)).status_code == 200
    assert token_client(alice).get(api(name, judged)).status_code == 403


@pytest.mark.parametrize("name", STATS)
def test_the_api_needs_credentials(client, judged, name):
    assert client.get(api(name, judged)).status_code in (401, 403)


def test_the_api_gives_the_same_numbers_as_the_page(client, judged, lee):
    data = token_client(lee).get(api("stats-round", judged, round=1)).json()

    assert (data["round"], data["baseline"], data["candidate"]) == (1, "chat-v1", "chat-v2")
    overall = data["overall"]
    assert (overall["wins"], overall["losses"], overall["ties"], overall["both_bad"], overall["cant_judge"]) == (
        18,
        8,
        4,
        2,
        2,
    )
    assert overall["win_rate"] == pytest.approx(0.65625)
    assert overall["wilson_low"] < 0.65625 < overall["wilson_high"]
    assert overall["bootstrap_low"] < 0.65625 < overall["bootstrap_high"]
    assert set(data["breakdowns"]) == {"strength", "tag", "safety", "turn", "annotator"}
    assert "counts as a tie" in data["policy"]

    client.force_login(lee)
    rows = read_csv(client.get(reverse("dashboard-csv", args=[judged.slug, "round"]) + "?round=1"))
    record = dict(zip(rows[0], rows[1], strict=True))
    assert float(record["bootstrap_low"]) == pytest.approx(overall["bootstrap_low"])


def test_the_api_history_ratings_agreement_and_quality(judged, lee, alice):
    client = token_client(lee)
    history = client.get(api("stats-history", judged)).json()
    assert [r["round"] for r in history["rounds"]] == [1, 2]

    ratings = client.get(api("stats-ratings", judged, anchor="chat-v1")).json()
    assert {m["model"] for m in ratings["models"]} == {"chat-v1", "chat-v2", "chat-v3"}
    assert next(m for m in ratings["models"] if m["model"] == "chat-v1")["rating"] == pytest.approx(1000)
    assert len(ratings["win_matrix"]["p"]) == 3 and ratings["anchor"] == "chat-v1"

    agreement = client.get(api("stats-agreement", judged, round=1)).json()
    assert agreement["without_strength"]["items"] == 17
    assert agreement["pairs"][0]["items"] == 17

    quality = client.get(api("stats-quality", judged, round=1)).json()
    assert {a["username"] for a in quality["annotators"]} == {"alice", "bob"}
    assert len(quality["rules"]) == 4


def test_the_api_answers_bad_filters_with_field_errors(judged, lee):
    client = token_client(lee)
    response = client.get(api("stats-round", judged, round=0, since="nope"))
    assert response.status_code == 400
    assert set(response.json()) == {"round", "since"}

    response = client.get(
        api("stats-round", judged, round=7, tag="unknown", anchor="gpt-9", since="2026-02-02", until="2026-01-01")
    )
    assert response.status_code == 400
    assert set(response.json()) == {"round", "tag", "anchor", "until"}


def test_the_api_on_a_project_without_rounds_is_empty_not_an_error(project, lee):
    data = token_client(lee).get(api("stats-round", project)).json()
    assert data["overall"] is None and data["breakdowns"] == {}
    assert token_client(lee).get(api("stats-ratings", project)).json()["models"] == []


def test_an_unknown_project_is_a_404(lee):
    assert token_client(lee).get(reverse("insights_api:stats-round", args=["nope"])).status_code == 404


def test_the_statistics_endpoints_are_in_the_openapi_schema(client, lee):
    client.force_login(lee)
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/json").content.decode()
    for path in ("/stats/history/", "/stats/round/", "/stats/ratings/", "/stats/agreement/", "/stats/quality/"):
        assert path in schema


def test_a_round_of_only_ties_shows_one_half_and_no_sign_test(client, round_, lee, alice, bob):
    build = Builder(round_)
    for verdict in [TIE] * 6 + [BAD] * 2:
        comparison = build.comparison()
        build.judge(comparison, alice, verdict)
        build.judge(comparison, bob, TIE)
    client.force_login(lee)
    html = client.get(page_url(round_.project)).content.decode()

    assert 'data-win-rate="0.5"' in html and "50.0%" in html
    assert "p —" in html  # no decisive verdict, no sign test
    assert '<td class="num"><strong>1000</strong></td>' in html  # equal ratings


def test_a_candidate_that_never_wins_is_rated_and_flagged_not_diverging(client, round_, lee, alice):
    build = Builder(round_)
    for _ in range(12):
        build.judge(build.comparison(), alice, OLD)
    client.force_login(lee)
    html = client.get(page_url(round_.project)).content.decode()

    assert 'data-win-rate="0.0"' in html
    assert "never won" in html and "never lost" in html
    assert "NaN" not in html and ">nan" not in html and "inf<" not in html


# --- Big rounds: never make the page wait ---------------------------------------------------


def test_on_a_big_project_a_cold_page_shows_placeholders_that_poll_until_the_numbers_are_in(
    client, judged, lee, monkeypatch
):
    from insights import cache as dashboard_cache

    started = []
    monkeypatch.setattr(dashboard_cache, "big_project", lambda project_id: True)
    monkeypatch.setattr(
        dashboard_cache, "_refresh_in_background", lambda key, compute, fp: started.append((key, compute, fp))
    )
    client.force_login(lee)

    html = client.get(page_url(judged, round=1)).content.decode()

    assert html.count("Computing these numbers") == 5
    sections = {attrs["id"]: attrs for tag, attrs in tags_of(html) if tag == "section"}
    assert {s["hx-trigger"] for s in sections.values()} == {"load delay:1s"}
    assert len(started) == 5  # one background computation per section
    client.get(page_url(judged, round=1))
    assert len(started) == 5  # not started twice while running

    for key, compute, fingerprint in started:  # what the background threads do
        dashboard_cache._store(key, compute, fingerprint)
    fragment = client.get(
        reverse("dashboard-section", args=[judged.slug, "round"]) + "?round=1", HTTP_HX_REQUEST="true"
    )
    html = fragment.content.decode()
    assert 'data-win-rate="0.65625"' in html and "Computing" not in html
    assert next(attrs for tag, attrs in tags_of(html) if tag == "section")["hx-trigger"] == "every 30s"


def test_csv_and_api_wait_for_the_numbers_instead_of_a_placeholder(client, judged, lee, monkeypatch):
    from insights import cache as dashboard_cache

    monkeypatch.setattr(dashboard_cache, "big_project", lambda project_id: True)
    monkeypatch.setattr(
        dashboard_cache, "_refresh_in_background", lambda *args: pytest.fail("must compute in the request")
    )
    client.force_login(lee)

    rows = read_csv(client.get(reverse("dashboard-csv", args=[judged.slug, "round"]) + "?round=1"))
    assert float(dict(zip(rows[0], rows[1], strict=True))["win_rate"]) == pytest.approx(0.65625)
    assert token_client(lee).get(api("stats-round", judged, round=1)).json()["overall"]["win_rate"] == pytest.approx(
        0.65625
    )
