"""Blind on every path: a pair with an answer that names a model is never handed out until
a lead releases that answer - whether it came from an import, sampling or live mode."""

from __future__ import annotations

import io
import json

from annotation.assignment import NoWork, assignment_next
from annotation.models import Comparison, Sample
from imports.services import ImportKind, ImportOptions, import_run
from models_service.sampling import sample_release
from tests.conftest import token_client


def import_pairs(project, rows, source="vendor"):
    return import_run(
        stream=io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode()),
        filename="pairs.jsonl",
        options=ImportOptions(kind=ImportKind.PAIRS, project=project, source=source),
    )


def pair(i, a="A plain answer.", b="Another plain answer."):
    return {"prompt": f"Question {i}?", "response_a": f"{a} ({i})", "response_b": f"{b} ({i})"}


def test_an_imported_pair_naming_a_model_is_held_until_its_answer_is_released(project, alice, bob):
    project.identity_terms = ["ChatGPT", "OpenAI"]
    project.overlap = 1
    project.save()
    report = import_pairs(project, [pair(1, a="As chatgpt, I think so."), pair(2, b="Trained by Open AI.")])
    assert report.committed and report.created["comparisons_held_back"] == 2
    assert set(Comparison.objects.values_list("held", flat=True)) == {True}

    # Not on the page's engine, not through the API.
    assert isinstance(assignment_next(annotator=alice, project=project), NoWork)
    response = token_client(bob).post(f"/api/v1/projects/{project.slug}/assignments/next/")
    assert response.status_code == 200 and response.json()["pair"] is None

    flagged = Sample.objects.get(text__startswith="As chatgpt")
    sample_release(sample=flagged)
    got = assignment_next(annotator=alice, project=project)
    assert not isinstance(got, NoWork)
    assert got.comparison.sample_a_id == flagged.pk
    assert Comparison.objects.filter(held=True).count() == 1  # the other pair is still held


def test_a_pair_stays_held_while_either_answer_is_unreleased(project, alice):
    project.identity_terms = ["Claude"]
    project.overlap = 1
    project.save()
    import_pairs(project, [pair(1, a="Claude here.", b="claude again.")])
    comparison = Comparison.objects.get()
    sample_release(sample=comparison.sample_a)
    comparison.refresh_from_db()
    assert comparison.held
    assert isinstance(assignment_next(annotator=alice, project=project), NoWork)
    sample_release(sample=comparison.sample_b)
    comparison.refresh_from_db()
    assert not comparison.held
    assert not isinstance(assignment_next(annotator=alice, project=project), NoWork)


def test_an_import_that_finds_a_flagged_answer_again_holds_its_new_pair(project, alice):
    project.identity_terms = ["LLaMA"]
    project.save()
    import_pairs(project, [pair(1, a="I'm llama.")], source="first")
    # The same answer in a pair with a new partner, imported into another round.
    row = pair(1, a="I'm llama.", b="A third answer.")
    report = import_pairs(project, [row], source="second")
    assert report.created.get("comparisons_held_back") == 1
    assert not Comparison.objects.filter(held=False).exists()
    assert isinstance(assignment_next(annotator=alice, project=project), NoWork)


def test_pairs_without_a_mention_are_handed_out_as_before(project, alice):
    project.identity_terms = ["ChatGPT"]
    project.save()
    report = import_pairs(project, [pair(1), pair(2)])
    assert "comparisons_held_back" not in report.created
    assert not isinstance(assignment_next(annotator=alice, project=project), NoWork)


def test_a_lead_sees_how_many_pairs_are_held_and_where_to_review_them(client, project, lee, maya):
    project.identity_terms = ["ChatGPT"]
    project.save()
    import_pairs(project, [pair(1, a="ChatGPT speaking."), pair(2)])
    client.force_login(lee)
    page = client.get(f"/projects/{project.slug}/").content.decode()
    assert "1 held back: an answer names a model" in page and "#flagged-samples" in page
    round_id = Comparison.objects.values_list("round_id", flat=True).first()
    detail = token_client(maya).get(f"/api/v1/rounds/{round_id}/").json()
    assert detail["comparisons_held"] == 1 and detail["comparison_count"] == 2
