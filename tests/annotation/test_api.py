"""The REST API under /api/v1/: who may call what, and what each endpoint does."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import IntegrityError
from django.db.models import F
from django.utils import timezone
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import api_token_create
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    Edit,
    Judgment,
    JudgmentSource,
    Project,
    Prompt,
    Round,
    RoundStatus,
    Sample,
    Side,
)
from annotation.services import project_create
from core.api import exception_handler
from imports.services import ImportKind, ImportOptions, import_run
from models_service.services import model_version_get_or_create
from tests.conftest import PASSWORD, token_client


def jsonl(*records: dict) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


PAIRS = [
    {"prompt": "What is the capital of France?", "response_a": "Paris.", "response_b": "It is Paris.", "label": "1"},
    {"prompt": "Name a prime number.", "response_a": "Four.", "response_b": "Seven."},
    {"prompt": "Say hello in Spanish.", "response_a": "Hola.", "response_b": "¡Hola!"},
]


@pytest.fixture
def judged_round(round_, alice):
    """``round_`` (chat-v1 vs chat-v2) with three comparisons: the first carries an imported
    label, the second alice's judgment with an edit, the third none yet."""
    report = import_run(
        stream=io.BytesIO(jsonl(*PAIRS)),
        filename="pairs.jsonl",
        options=ImportOptions(
            kind=ImportKind.PAIRS,
            project=round_.project,
            round=round_,
            source="vendor",
            model_a="chat-v1",
            model_b="chat-v2",
        ),
    )
    assert report.committed, report.errors
    second = Comparison.objects.filter(round=round_).order_by("id")[1]
    now = timezone.now()
    assignment = Assignment.objects.create(
        comparison=second,
        annotator=alice,
        left=Side.B,
        status=AssignmentStatus.SUBMITTED,
        leased_at=now,
        lease_expires_at=now + timedelta(minutes=15),
        completed_at=now,
    )
    judgment = Judgment.objects.create(
        comparison=second,
        annotator=alice,
        assignment=assignment,
        preferred="B",
        strength="better",
        safety="both_safe",
        left="B",
        time_spent_ms=4200,
        rationale="B is right.",
        source=JudgmentSource.UI,
    )
    Edit.objects.create(judgment=judgment, base_sample=second.sample_b, text="Seven is prime.")
    Comparison.objects.filter(pk=second.pk).update(judgment_count=F("judgment_count") + 1, taken=F("taken") + 1)
    return round_


@pytest.fixture
def ids(judged_round, versions, lee):
    """Values that fill the endpoint table's URLs."""
    comparison = Comparison.objects.filter(round=judged_round).order_by("id").first()
    return {
        "slug": judged_round.project.slug,
        "round": judged_round.pk,
        "version": versions[0].pk,
        "prompt": comparison.prompt_id,
        "comparison": comparison.pk,
    }


# --- Who may call what ---------------------------------------------------------------------

ANY = {"alice", "lee", "maya"}
LEAD = {"lee"}
LEAD_OR_ML = {"lee", "maya"}


def _new_pairs_file() -> dict:
    record = {"prompt": "A fresh prompt", "response_a": "x", "response_b": "y"}
    return {"file": upload("new.jsonl", jsonl(record)), "kind": "pairs"}


# (method, URL template, roles that may call it, body, status for those roles)
ENDPOINTS = [
    ("get", "/api/v1/me/", ANY, None, 200),
    # with a token nobody may list or mint tokens (a session may: tests/accounts/test_apis.py)
    ("get", "/api/v1/tokens/", (), None, 200),
    ("post", "/api/v1/tokens/", (), {"name": "laptop"}, 201),
    ("get", "/api/v1/model-versions/", LEAD_OR_ML, None, 200),  # annotators judge blind
    ("post", "/api/v1/model-versions/", LEAD_OR_ML, {"name": "chat-v3"}, 201),
    ("get", "/api/v1/model-versions/{version}/", LEAD_OR_ML, None, 200),
    ("patch", "/api/v1/model-versions/{version}/", LEAD_OR_ML, {"description": "SFT"}, 200),
    ("get", "/api/v1/projects/", ANY, None, 200),
    ("post", "/api/v1/projects/", LEAD, {"name": "Safety v1"}, 201),
    ("get", "/api/v1/projects/{slug}/", ANY, None, 200),
    ("patch", "/api/v1/projects/{slug}/", LEAD, {"guidelines": "Be strict."}, 200),
    ("get", "/api/v1/projects/{slug}/rounds/", LEAD_OR_ML, None, 200),
    ("post", "/api/v1/projects/{slug}/rounds/", LEAD, "new-round", 201),
    ("get", "/api/v1/projects/{slug}/prompts/", LEAD_OR_ML, None, 200),
    ("post", "/api/v1/projects/{slug}/imports/", LEAD_OR_ML, "import", 201),
    ("get", "/api/v1/rounds/{round}/", LEAD_OR_ML, None, 200),
    ("post", "/api/v1/rounds/{round}/open/", LEAD, None, 200),
    ("post", "/api/v1/rounds/{round}/close/", LEAD, None, 200),
    ("post", "/api/v1/rounds/{round}/build-comparisons/", LEAD, {}, 200),
    ("get", "/api/v1/rounds/{round}/comparisons/", LEAD_OR_ML, None, 200),
    ("get", "/api/v1/rounds/{round}/judgments/", LEAD_OR_ML, None, 200),
    ("get", "/api/v1/prompts/{prompt}/", LEAD_OR_ML, None, 200),
    ("get", "/api/v1/comparisons/{comparison}/", LEAD_OR_ML, None, 200),
]


def _call(client: APIClient, method: str, url: str, body):
    if body == "import":
        return client.post(url, _new_pairs_file(), format="multipart")
    if body == "new-round":
        baseline, candidate = model_version_get_or_create(name="chat-v1"), model_version_get_or_create(name="chat-v2")
        body = {"baseline": baseline.pk, "candidate": candidate.pk}
    return getattr(client, method)(url, body, format="json")


@pytest.mark.parametrize(("method", "template", "allowed", "body", "ok"), ENDPOINTS)
@pytest.mark.parametrize("username", ["alice", "lee", "maya"])
def test_each_role_may_call_exactly_its_endpoints(request, ids, method, template, allowed, body, ok, username):
    user = request.getfixturevalue(username)
    response = _call(token_client(user), method, template.format(**ids), body)
    expected = ok if username in allowed else 403
    assert response.status_code == expected, response.content


@pytest.mark.parametrize(("method", "template", "allowed", "body", "ok"), ENDPOINTS)
def test_every_endpoint_answers_401_without_credentials(ids, method, template, allowed, body, ok):
    response = _call(APIClient(), method, template.format(**ids), body)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_an_unknown_token_is_refused_with_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token pd_not-a-real-key")
    assert client.get("/api/v1/me/").status_code == 401


def test_a_session_login_works_too(lee):
    client = APIClient()
    assert client.login(username="lee", password=PASSWORD)
    assert client.get("/api/v1/me/").json() == {"username": "lee", "roles": ["lead"]}


def test_an_annotator_cannot_list_judgments(judged_round, alice):
    response = token_client(alice).get(f"/api/v1/rounds/{judged_round.pk}/judgments/")
    assert response.status_code == 403
    assert "lead" in response.json()["detail"]


def test_an_annotator_cannot_see_comparisons_with_model_names(judged_round, alice):
    client = token_client(alice)
    assert client.get(f"/api/v1/rounds/{judged_round.pk}/comparisons/").status_code == 403
    assert client.get(f"/api/v1/rounds/{judged_round.pk}/").status_code == 403


def test_an_ml_engineer_cannot_create_a_project_or_open_a_round(round_, maya):
    client = token_client(maya)
    assert client.post("/api/v1/projects/", {"name": "Mine"}, format="json").status_code == 403
    assert client.post(f"/api/v1/rounds/{round_.pk}/open/").status_code == 403
    assert not Project.objects.filter(name="Mine").exists()


def test_a_user_without_a_role_reaches_only_me_and_tokens(project, charlie):
    client = APIClient()
    client.force_login(charlie)  # tokens are managed from a session
    assert client.get("/api/v1/me/").json() == {"username": "charlie", "roles": []}
    assert client.get("/api/v1/tokens/").status_code == 200
    assert client.get("/api/v1/projects/").status_code == 403


# --- Projects and model versions -----------------------------------------------------------


def test_a_lead_creates_a_project_through_the_api(lee):
    response = token_client(lee).post(
        "/api/v1/projects/",
        {"name": "Code review", "overlap": 3, "guidelines": "Prefer *working* code.", "identity_terms": ["Llama"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "code-review"
    assert body["overlap"] == 3
    assert body["created_by"] == "lee"
    assert body["identity_terms"] == ["Llama"]
    project = Project.objects.get(slug="code-review")
    assert project.created_by == lee and project.overlap == 3


def test_a_project_that_breaks_a_rule_is_refused_with_400(project, lee):
    client = token_client(lee)
    duplicate = client.post("/api/v1/projects/", {"name": project.name}, format="json")
    assert duplicate.status_code == 400
    assert "name" in duplicate.json()
    too_much = client.post("/api/v1/projects/", {"name": "Big", "overlap": 99}, format="json")
    assert too_much.status_code == 400
    assert "overlap" in too_much.json()


def test_a_lead_changes_a_project_but_not_its_slug(project, lee):
    response = token_client(lee).patch(
        f"/api/v1/projects/{project.slug}/", {"name": "Helpfulness v2", "slug": "moved", "overlap": 2}, format="json"
    )
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert (project.name, project.slug, project.overlap) == ("Helpfulness v2", "helpfulness-v1", 2)


def test_annotators_see_active_projects_without_identity_terms(lee, alice):
    project_create(name="Live", created_by=lee, identity_terms=["GPT"])
    project_create(name="Archived", created_by=lee, is_active=False)
    annotator_view = token_client(alice).get("/api/v1/projects/").json()
    assert [p["name"] for p in annotator_view["results"]] == ["Live"]
    assert "identity_terms" not in annotator_view["results"][0]
    assert token_client(alice).get("/api/v1/projects/archived/").status_code == 404
    lead_view = token_client(lee).get("/api/v1/projects/").json()
    assert [p["name"] for p in lead_view["results"]] == ["Archived", "Live"]
    assert lead_view["results"][1]["identity_terms"] == ["GPT"]


def test_lists_are_paginated_with_limit_and_offset(lee):
    for n in range(5):
        model_version_get_or_create(name=f"ckpt-{n}")
    body = token_client(lee).get("/api/v1/model-versions/?limit=2&offset=2").json()
    assert body["count"] == 5
    assert [v["name"] for v in body["results"]] == ["ckpt-2", "ckpt-3"]
    assert "offset=4" in body["next"] and body["previous"]


def test_a_model_version_cannot_descend_from_itself(versions, maya):
    parent, child = versions
    client = token_client(maya)
    assert client.patch(f"/api/v1/model-versions/{child.pk}/", {"parent": parent.pk}, format="json").status_code == 200
    response = client.patch(f"/api/v1/model-versions/{parent.pk}/", {"parent": child.pk}, format="json")
    assert response.status_code == 400
    assert "parent" in response.json()


def test_a_taken_model_version_name_is_refused(versions, maya):
    response = token_client(maya).post("/api/v1/model-versions/", {"name": "chat-v1"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()


# --- Rounds --------------------------------------------------------------------------------


def test_a_lead_creates_opens_and_closes_a_round_through_the_api(project, versions, lee):
    baseline, candidate = versions
    client = token_client(lee)
    response = client.post(
        f"/api/v1/projects/{project.slug}/rounds/", {"baseline": baseline.pk, "candidate": candidate.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["number"] == 1
    assert created["status"] == RoundStatus.DRAFT
    assert created["baseline"] == {"id": baseline.pk, "name": "chat-v1"}
    assert created["comparison_count"] == 0
    opened = client.post(f"/api/v1/rounds/{created['id']}/open/").json()
    assert opened["status"] == RoundStatus.OPEN and opened["opened_at"]
    closed = client.post(f"/api/v1/rounds/{created['id']}/close/").json()
    assert closed["status"] == RoundStatus.CLOSED
    reopened = client.post(f"/api/v1/rounds/{created['id']}/open/")
    assert reopened.status_code == 400
    assert "closed" in reopened.json()["non_field_errors"][0]


def test_an_old_vs_new_round_needs_two_versions(project, versions, lee):
    baseline, _ = versions
    response = token_client(lee).post(
        f"/api/v1/projects/{project.slug}/rounds/", {"baseline": baseline.pk, "candidate": baseline.pk}, format="json"
    )
    assert response.status_code == 400
    assert "two different model versions" in response.json()["non_field_errors"][0]
    assert not Round.objects.exists()


def test_a_round_reports_its_counts(judged_round, maya):
    body = token_client(maya).get(f"/api/v1/rounds/{judged_round.pk}/").json()
    assert body["comparison_count"] == 3
    assert body["judgment_count"] == 2
    assert body["comparisons_complete"] == 2


def test_building_comparisons_pairs_the_two_versions_samples(round_, versions, lee):
    baseline, candidate = versions
    samples = jsonl(
        {"prompt": "Hi", "model": baseline.name, "text": "Hello."},
        {"prompt": "Hi", "model": candidate.name, "text": "Hello there!"},
        {"prompt": "Bye", "model": baseline.name, "text": "Goodbye."},
    )
    client = token_client(lee)
    imported = client.post(
        f"/api/v1/projects/{round_.project.slug}/imports/",
        {"file": upload("s.jsonl", samples), "kind": "samples"},
        format="multipart",
    )
    assert imported.status_code == 201, imported.content
    response = client.post(f"/api/v1/rounds/{round_.pk}/build-comparisons/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["created"] == 1
    assert response.json()["round"]["comparison_count"] == 1
    again = client.post(f"/api/v1/rounds/{round_.pk}/build-comparisons/", {}, format="json")
    assert again.json()["created"] == 0


# --- Prompts, comparisons, judgments -------------------------------------------------------


def test_prompts_can_be_filtered_by_tag(project, maya):
    prompts = jsonl(
        {"prompt": "Write a sort function", "tags": ["code"]},
        {"prompt": "Is this safe?", "tags": ["safety", "Code"]},
        {"prompt": "Tell a joke"},
    )
    report = import_run(
        stream=io.BytesIO(prompts), filename="p.jsonl", options=ImportOptions(kind=ImportKind.PROMPTS, project=project)
    )
    assert report.committed
    client = token_client(maya)
    tagged = client.get(f"/api/v1/projects/{project.slug}/prompts/", {"tag": "code"}).json()
    assert [p["messages"][0]["content"] for p in tagged["results"]] == ["Write a sort function", "Is this safe?"]
    assert client.get(f"/api/v1/projects/{project.slug}/prompts/").json()["count"] == 3
    assert client.get(f"/api/v1/projects/{project.slug}/prompts/", {"tag": "safety"}).json()["count"] == 1
    prompt = client.get(f"/api/v1/prompts/{tagged['results'][1]['id']}/").json()
    assert prompt["tags"] == ["safety", "code"]


def test_the_comparisons_list_shows_a_lead_the_model_names(judged_round, lee):
    body = token_client(lee).get(f"/api/v1/rounds/{judged_round.pk}/comparisons/").json()
    assert body["count"] == 3
    first = body["results"][0]
    assert first["prompt"]["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert first["sample_a"]["model_version_name"] == "chat-v1"
    assert first["sample_a"]["text"] == "Paris."
    assert first["sample_b"]["model_version_name"] == "chat-v2"
    assert first["sample_b"]["text"] == "It is Paris."
    assert first["is_complete"] is True
    assert body["results"][2]["is_complete"] is False
    detail = token_client(lee).get(f"/api/v1/comparisons/{first['id']}/").json()
    assert detail == first


def test_the_judgments_list_gives_one_row_per_judgment_in_sample_terms(judged_round, maya):
    body = token_client(maya).get(f"/api/v1/rounds/{judged_round.pk}/judgments/").json()
    assert body["count"] == 2
    imported, alices = body["results"]
    assert imported["annotator"] == "ext.vendor"
    assert imported["preferred"] == "A"
    assert imported["source"] == "import"
    assert imported["left"] == "" and imported["edit_text"] is None
    second = Comparison.objects.filter(round=judged_round).order_by("id")[1]
    assert alices["comparison"] == second.pk
    assert (alices["sample_a"], alices["sample_b"]) == (second.sample_a_id, second.sample_b_id)
    assert alices["annotator"] == "alice"
    assert (alices["preferred"], alices["strength"], alices["safety"]) == ("B", "better", "both_safe")
    assert (alices["left"], alices["time_spent_ms"], alices["rationale"]) == ("B", 4200, "B is right.")
    assert alices["edit_text"] == "Seven is prime."
    assert alices["edit_base_sample"] == second.sample_b_id


def test_the_judgments_list_keeps_those_since_a_time(judged_round, lee):
    old = datetime(2020, 1, 1, tzinfo=UTC)
    Judgment.objects.filter(source=JudgmentSource.IMPORT).update(created_at=old)
    client = token_client(lee)
    recent = client.get(f"/api/v1/rounds/{judged_round.pk}/judgments/", {"since": "2021-01-01T00:00:00Z"}).json()
    assert [j["annotator"] for j in recent["results"]] == ["alice"]
    everything = client.get(f"/api/v1/rounds/{judged_round.pk}/judgments/", {"since": "2019-12-31T23:00:00+00:00"})
    assert everything.json()["count"] == 2
    bad = client.get(f"/api/v1/rounds/{judged_round.pk}/judgments/", {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()


@pytest.mark.parametrize("what", ["comparisons", "judgments"])
def test_a_page_of_results_costs_the_same_queries_however_many_rows(judged_round, lee, what, django_assert_num_queries):
    client = token_client(lee)
    url = f"/api/v1/rounds/{judged_round.pk}/{what}/"
    client.get(url)  # the token's last_used_at is written on first use only
    with django_assert_num_queries(3) as few:  # round, count, page (the token and roles come from the cache)
        assert client.get(url, {"limit": 1}).json()["results"]
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(client.get(url).json()["results"]) > 1


def test_missing_objects_are_404(lee):
    client = token_client(lee)
    assert client.get("/api/v1/projects/nope/").status_code == 404
    assert client.get("/api/v1/rounds/999999/").status_code == 404
    assert client.get("/api/v1/comparisons/999999/").status_code == 404


# --- Imports -------------------------------------------------------------------------------


def _counts() -> tuple[int, int, int, int]:
    return Prompt.objects.count(), Sample.objects.count(), Comparison.objects.count(), Judgment.objects.count()


def test_importing_good_pairs_commits_them(project, maya):
    response = token_client(maya).post(
        f"/api/v1/projects/{project.slug}/imports/",
        {
            "file": upload("pairs.jsonl", jsonl(*PAIRS)),
            "kind": "pairs",
            "source": "vendor",
            "model_a": "chat-v1",
            "model_b": "chat-v2",
            "tags": ["general", "trivia"],
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    report = response.json()
    assert report["committed"] is True
    assert (report["records"], report["valid"], report["error_count"]) == (3, 3, 0)
    assert report["created"]["prompts"] == 3
    assert report["created"]["samples"] == 6
    assert report["created"]["comparisons"] == 3
    assert report["created"]["judgments"] == 1
    assert _counts() == (3, 6, 3, 1)
    round_ = Round.objects.get(pk=report["round_id"])
    assert (round_.baseline.name, round_.candidate.name) == ("chat-v1", "chat-v2")
    assert all(p.tags == ["general", "trivia"] for p in Prompt.objects.all())


def test_a_file_with_one_bad_line_is_refused_whole(round_, lee):
    before = _counts()
    lines = [PAIRS[0], {"prompt": "Broken", "response_a": "only one answer"}, PAIRS[2]]
    response = token_client(lee).post(
        f"/api/v1/projects/{round_.project.slug}/imports/",
        {"file": upload("pairs.jsonl", jsonl(*lines)), "kind": "pairs", "round": round_.number},
        format="multipart",
    )
    assert response.status_code == 400
    report = response.json()
    assert report["committed"] is False
    assert report["error_count"] == 1
    assert [(e["line"], e["field"], e["message"]) for e in report["errors"]] == [(2, "response_b", "is required")]
    assert report["created"] == {}
    assert _counts() == before


def test_skip_invalid_commits_the_good_lines_and_lists_the_bad(project, lee):
    lines = jsonl(PAIRS[0], {"prompt": "", "response_a": "a", "response_b": "b"})
    response = token_client(lee).post(
        f"/api/v1/projects/{project.slug}/imports/",
        {"file": upload("pairs.jsonl", lines), "kind": "pairs", "skip_invalid": "true"},
        format="multipart",
    )
    assert response.status_code == 201
    report = response.json()
    assert report["created"]["comparisons"] == 1
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(2, "prompt")]


def test_a_csv_upload_that_goes_to_disk_imports_prompts(project, lee, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # the upload becomes a temporary file, as big ones do
    csv = 'prompt,tags\nTranslate \'cat\' to French,multilingual\n"Explain recursion, briefly","code,teaching"\n'
    response = token_client(lee).post(
        f"/api/v1/projects/{project.slug}/imports/",
        {"file": upload("prompts.csv", csv.encode()), "kind": "prompts", "tags": "batch-7"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["created"] == {"prompts": 2}
    tags = sorted(tuple(p.tags) for p in Prompt.objects.all())
    assert tags == [("code", "teaching", "batch-7"), ("multilingual", "batch-7")]


def test_importing_into_a_round_the_project_lacks_is_a_400(project, lee):
    response = token_client(lee).post(
        f"/api/v1/projects/{project.slug}/imports/",
        {"file": upload("pairs.jsonl", jsonl(PAIRS[0])), "kind": "pairs", "round": 7},
        format="multipart",
    )
    assert response.status_code == 400
    assert "round" in response.json()
    assert _counts() == (0, 0, 0, 0)


def test_a_file_of_unknown_format_is_refused_with_a_report(project, lee):
    response = token_client(lee).post(
        f"/api/v1/projects/{project.slug}/imports/",
        {"file": upload("notes.txt", b"just some words\n"), "kind": "prompts"},
        format="multipart",
    )
    assert response.status_code == 400
    report = response.json()
    assert report["committed"] is False
    assert report["errors"][0]["line"] is None and report["errors"][0]["item"] is None  # the file as a whole
    assert "format" in report["errors"][0]["message"]


def test_prompts_cannot_be_imported_into_a_round(round_, lee):
    response = token_client(lee).post(
        f"/api/v1/projects/{round_.project.slug}/imports/",
        {"file": upload("p.jsonl", jsonl({"prompt": "Hi"})), "kind": "prompts", "round": round_.number},
        format="multipart",
    )
    assert response.status_code == 400
    assert "not a round" in response.json()["errors"][0]["message"]


# --- Tokens --------------------------------------------------------------------------------


def test_a_new_token_key_is_shown_once_and_only_its_hash_is_stored(maya):
    client = APIClient()
    client.force_login(maya)
    response = client.post("/api/v1/tokens/", {"name": "training box"}, format="json")
    assert response.status_code == 201
    key = response.json()["key"]
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {token.name, token.prefix, token.key_hash}
    assert key.startswith(token.prefix)
    listed = client.get("/api/v1/tokens/")
    assert key not in listed.content.decode()
    assert all("key" not in t for t in listed.json()["results"])
    assert [t["name"] for t in listed.json()["results"]] == ["training box"]
    holder = APIClient()
    holder.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert holder.get("/api/v1/me/").json()["username"] == "maya"


def test_a_token_cannot_create_another_token_but_a_logged_in_session_can(maya):
    client = token_client(maya)
    response = client.post("/api/v1/tokens/", {"name": "minted"}, format="json")
    assert response.status_code == 403
    assert "logged-in browser session" in response.json()["detail"]
    assert not ApiToken.objects.filter(name="minted").exists()
    browser = APIClient()
    assert browser.login(username="maya", password=PASSWORD)
    assert browser.post("/api/v1/tokens/", {"name": "minted"}, format="json").status_code == 201


def test_a_revoked_token_is_refused_with_401(lee):
    token, key = api_token_create(user=lee, name="old")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/me/").status_code == 200
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert client.get("/api/v1/me/").status_code == 401
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_user_cannot_revoke_someone_elses_token(alice, bob):
    token, key = api_token_create(user=alice, name="alice's")
    api_token_create(user=bob, name="bob's")
    client = APIClient()
    client.force_login(bob)
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert [t["name"] for t in client.get("/api/v1/tokens/").json()["results"]] == ["bob's"]


# --- Errors --------------------------------------------------------------------------------


def test_a_django_validation_error_becomes_a_400_with_field_messages():
    response = exception_handler(DjangoValidationError({"name": "Taken.", NON_FIELD_ERRORS: "Broken."}), {})
    assert response.status_code == 400
    assert response.data == {"name": ["Taken."], "non_field_errors": ["Broken."]}
    plain = exception_handler(DjangoValidationError("Closed."), {})
    assert plain.status_code == 400 and plain.data == {"non_field_errors": ["Closed."]}


def test_an_integrity_error_becomes_a_400_with_a_clear_message():
    response = exception_handler(IntegrityError('duplicate key value violates unique constraint "x"\nDETAIL: …'), {})
    assert response.status_code == 400
    assert "refused" in response.data["detail"]
    assert response.data["reason"] == 'duplicate key value violates unique constraint "x"'


# --- Schema --------------------------------------------------------------------------------


def test_the_schema_is_served_to_a_logged_in_user_and_is_valid_openapi(lee):
    client = APIClient()
    client.force_login(lee)
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/v1/projects/",
        "/api/v1/projects/{slug}/rounds/",
        "/api/v1/projects/{slug}/imports/",
        "/api/v1/rounds/{id}/judgments/",
        "/api/v1/rounds/{id}/comparisons/",
        "/api/v1/tokens/{id}/",
        "/api/v1/me/",
    ):
        assert path in schema["paths"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    validate_schema(schema)


def test_the_schema_generates_without_warnings(db, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi:")
