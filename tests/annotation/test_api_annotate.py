"""The annotators' API: next pair, judge in screen terms, skip. Model names never leak."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, Comparison, Edit, Judgment, JudgmentSource
from models_service.models import ModelVersion
from tests.annotation.test_assignment import fill
from tests.conftest import token_client


@pytest.fixture
def pairs(round_):
    round_.project.require_safety = False
    round_.project.save()
    return fill(round_, 3)


def next_pair(client, project):
    response = client.post(f"/api/v1/projects/{project.slug}/assignments/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_an_annotator_gets_a_pair_without_model_names_or_sample_ids(project, pairs, alice):
    body = next_pair(token_client(alice), project)
    pair = body["pair"]
    assert set(pair) == {"assignment", "lease_expires_at", "prompt", "left", "right"}
    comparison = (
        Assignment.objects.select_related("comparison__sample_a", "comparison__sample_b")
        .get(pk=pair["assignment"])
        .comparison
    )
    assert {pair["left"], pair["right"]} == {comparison.sample_a.text, comparison.sample_b.text}
    assert pair["prompt"] == comparison.prompt.messages
    raw = str(body)
    for version in ModelVersion.objects.all():
        assert version.name not in raw
    assert "sample" not in raw


def test_a_left_choice_is_stored_in_sample_terms(project, pairs, alice):
    client = token_client(alice)
    pair = next_pair(client, project)["pair"]
    response = client.post(
        f"/api/v1/assignments/{pair['assignment']}/judgment/", {"choice": "left", "strength": "slightly"}, format="json"
    )
    assert response.status_code == 201, response.content
    judgment = Judgment.objects.get()
    shown_left_text = pair["left"]
    comparison = Comparison.objects.select_related("sample_a").get(pk=judgment.comparison_id)
    assert judgment.preferred == ("A" if comparison.sample_a.text == shown_left_text else "B")
    assert judgment.source == JudgmentSource.API
    assert response.json()["choice"] == "left"


def test_a_retried_submission_answers_200_with_the_same_judgment(project, pairs, alice):
    client = token_client(alice)
    pair = next_pair(client, project)["pair"]
    url = f"/api/v1/assignments/{pair['assignment']}/judgment/"
    first = client.post(url, {"choice": "tie"}, format="json")
    again = client.post(url, {"choice": "tie"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Judgment.objects.count() == 1


def test_a_preference_without_strength_is_a_400_naming_the_field(project, pairs, alice):
    client = token_client(alice)
    pair = next_pair(client, project)["pair"]
    response = client.post(f"/api/v1/assignments/{pair['assignment']}/judgment/", {"choice": "right"}, format="json")
    assert response.status_code == 400
    assert "strength" in response.json()
    assert Judgment.objects.count() == 0


def test_someone_elses_assignment_is_a_404(project, pairs, alice, bob):
    pair = next_pair(token_client(alice), project)["pair"]
    response = token_client(bob).post(
        f"/api/v1/assignments/{pair['assignment']}/judgment/", {"choice": "tie"}, format="json"
    )
    assert response.status_code == 404


def test_an_edit_is_saved_from_the_side_chosen_on_screen(project, pairs, alice):
    client = token_client(alice)
    pair = next_pair(client, project)["pair"]
    response = client.post(
        f"/api/v1/assignments/{pair['assignment']}/judgment/",
        {"choice": "both_bad", "edit_text": "A careful answer.", "edit_base": "right"},
        format="json",
    )
    assert response.status_code == 201, response.content
    edit = Edit.objects.select_related("base_sample").get()
    assert edit.base_sample.text == pair["right"]


def test_a_skip_returns_the_pair_to_the_pool_and_needs_a_reason(project, pairs, alice):
    client = token_client(alice)
    pair = next_pair(client, project)["pair"]
    url = f"/api/v1/assignments/{pair['assignment']}/skip/"
    assert client.post(url, {"reason": ""}, format="json").status_code == 400
    assert client.post(url, {"reason": "Not my language"}, format="json").status_code == 204
    assert Comparison.objects.filter(taken=0).count() == 3


def test_when_everything_is_judged_the_answer_says_so(project, pairs, alice):
    client = token_client(alice)
    for _ in range(3):
        pair = next_pair(client, project)["pair"]
        client.post(f"/api/v1/assignments/{pair['assignment']}/judgment/", {"choice": "tie"}, format="json")
    body = next_pair(client, project)
    assert body["pair"] is None and "all the judgments" in body["reason"]


def test_only_annotators_may_ask_for_pairs(project, pairs, lee, maya):
    for user in (lee, maya):
        response = token_client(user).post(f"/api/v1/projects/{project.slug}/assignments/next/", {}, format="json")
        assert response.status_code == 403


def test_a_lead_changing_the_project_applies_to_the_very_next_submission(project, pairs, alice):
    """The hot endpoints read the project from the cache; saving it drops the cached copy."""
    client = token_client(alice)
    first = next_pair(client, project)["pair"]
    second = client.post(
        f"/api/v1/projects/{project.slug}/assignments/next/", {"exclude": [first["assignment"]]}, format="json"
    ).json()["pair"]
    assert second["assignment"] != first["assignment"]
    url = "/api/v1/assignments/{}/judgment/"
    assert client.post(url.format(first["assignment"]), {"choice": "tie"}, format="json").status_code == 201
    project.allow_tie = False
    project.save()
    refused = client.post(url.format(second["assignment"]), {"choice": "tie"}, format="json")
    assert refused.status_code == 400
    assert "preferred" in refused.json()


def test_a_deactivated_project_stops_handing_out_pairs_at_once(project, pairs, alice):
    client = token_client(alice)
    next_pair(client, project)
    project.is_active = False
    project.save()
    response = client.post(f"/api/v1/projects/{project.slug}/assignments/next/", {}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("spent", [2**31, 2**63, 10**30])
def test_a_time_spent_past_any_column_is_recorded_as_the_longest_a_judgment_may_claim(project, pairs, alice, spent):
    from annotation.judging import TIME_SPENT_MAX_MS

    client = token_client(alice)
    pair = next_pair(client, project)["pair"]
    response = client.post(
        f"/api/v1/assignments/{pair['assignment']}/judgment/",
        {"choice": "left", "strength": "slightly", "time_spent_ms": spent},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Judgment.objects.get().time_spent_ms == TIME_SPENT_MAX_MS


@pytest.mark.parametrize("exclude", [[2**63], [0], [-1], list(range(1, 200))])
def test_ids_to_exclude_are_ids_a_column_holds_and_a_handful(project, pairs, alice, exclude):
    response = token_client(alice).post(
        f"/api/v1/projects/{project.slug}/assignments/next/", {"exclude": exclude}, format="json"
    )
    assert response.status_code == 400
    assert "exclude" in response.json()
