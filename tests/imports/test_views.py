"""The lead's import pages: upload a file, read the report."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Comparison, Judgment, Prompt, Round, Sample
from tests.annotation.test_views import llmbar_file, pairs_url

pytestmark = pytest.mark.django_db


def import_url(project) -> str:
    return reverse("project-import", args=[project.slug])


def test_the_import_form_commits_a_good_llmbar_file_and_shows_counts(client, lee, project):
    client.force_login(lee)
    response = client.post(import_url(project), {"file": llmbar_file(), "kind": "pairs", "source": "llmbar-natural"})
    html = response.content.decode()
    assert response.status_code == 200
    report = response.context["report"]
    assert report.committed
    assert report.created == {"rounds": 1, "prompts": 2, "samples": 4, "comparisons": 2, "judgments": 2}
    assert "Imported" in html and "nothing was written" not in html
    assert "New pairs" in html and "New answers" in html and "New labels" in html
    assert Comparison.objects.filter(round__project=project).count() == 2
    assert Judgment.objects.count() == 2
    round_ = Round.objects.get(pk=report.round_id)
    assert pairs_url(round_) in html


def test_a_file_with_one_bad_line_shows_that_line_and_writes_nothing(client, lee, project):
    lines = [
        {"input": "One?", "output_1": "1", "output_2": "one"},
        {"input": "Two?", "output_1": "2", "output_2": "two"},
        {"input": "Three?", "output_1": "3"},
        {"input": "Four?", "output_1": "4", "output_2": "four"},
    ]
    upload = SimpleUploadedFile("pairs.jsonl", "\n".join(json.dumps(r) for r in lines).encode())
    client.force_login(lee)
    response = client.post(import_url(project), {"file": upload, "kind": "pairs"})
    html = response.content.decode()
    assert response.status_code == 200
    assert not response.context["report"].committed
    assert "nothing was written" in html
    assert '<td class="num">line 3</td><td class="error-field"><code>response_b</code></td><td>is required</td>' in html
    assert Prompt.objects.count() == 0
    assert Sample.objects.count() == 0
    assert Comparison.objects.count() == 0
    assert not Round.objects.filter(project=project).exists()


def test_skip_invalid_lines_commits_the_good_ones_and_lists_the_bad(client, lee, project):
    lines = [{"input": "One?", "output_1": "1", "output_2": "one"}, {"input": "Two?", "output_1": "2"}]
    upload = SimpleUploadedFile("pairs.jsonl", "\n".join(json.dumps(r) for r in lines).encode())
    client.force_login(lee)
    response = client.post(import_url(project), {"file": upload, "kind": "pairs", "skip_invalid": "on"})
    html = response.content.decode()
    assert response.context["report"].committed
    assert "bad records were skipped" in html
    assert "response_b" in html
    assert Comparison.objects.count() == 1


def test_a_big_upload_streams_from_a_temporary_file(client, lee, project, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every upload goes to a temporary file
    csv_text = 'input,output_1,output_2,label\nOne?,1,one,1\n"Two, or three?",2,two,2\n'
    client.force_login(lee)
    response = client.post(
        import_url(project), {"file": SimpleUploadedFile("pairs.csv", csv_text.encode()), "kind": "pairs"}
    )
    assert response.context["report"].committed, response.context["report"].errors
    assert Comparison.objects.count() == 2
    response = client.post(import_url(project), {"file": llmbar_file(), "kind": "pairs", "source": "other"})
    assert response.context["report"].created["comparisons"] == 2


def test_the_import_form_names_the_models_of_pairs(client, lee, project):
    client.force_login(lee)
    response = client.post(
        import_url(project), {"file": llmbar_file(), "kind": "pairs", "model_a": "llama-7b", "model_b": "llama-13b"}
    )
    round_ = Round.objects.get(pk=response.context["report"].round_id)
    assert (round_.baseline.name, round_.candidate.name) == ("llama-7b", "llama-13b")


def test_the_import_form_adds_pairs_to_an_existing_round(client, lee, round_):
    client.force_login(lee)
    response = client.post(
        import_url(round_.project), {"file": llmbar_file(), "kind": "pairs", "round_number": round_.number}
    )
    assert response.context["report"].round_id == round_.pk
    assert round_.comparisons.count() == 2


def test_the_import_form_refuses_an_unknown_round_and_a_round_for_prompts(client, lee, round_):
    client.force_login(lee)
    response = client.post(import_url(round_.project), {"file": llmbar_file(), "kind": "pairs", "round_number": 7})
    assert response.status_code == 400
    assert response.context["report"] is None
    assert "This project has no round 7." in response.content.decode()
    response = client.post(import_url(round_.project), {"file": llmbar_file(), "kind": "prompts", "round_number": 1})
    assert "not to a round" in response.content.decode()
    assert Prompt.objects.count() == 0


def test_a_file_of_unknown_format_is_refused_on_the_form(client, lee, project):
    client.force_login(lee)
    upload = SimpleUploadedFile("notes.txt", b"just some words")
    response = client.post(import_url(project), {"file": upload, "kind": "prompts"})
    assert response.status_code == 400
    assert "cannot tell the format" in response.content.decode()


def test_the_import_form_needs_a_file_and_a_kind(client, lee, project):
    client.force_login(lee)
    response = client.post(import_url(project), {})
    assert response.status_code == 400
    assert response.context["form"].errors.keys() == {"file", "kind"}


def test_leads_see_the_import_form(client, lee, project):
    client.force_login(lee)
    response = client.get(import_url(project))
    assert response.status_code == 200
    assert 'type="file"' in response.content.decode()


@pytest.mark.parametrize("user", ["alice", "maya"])
def test_a_non_lead_gets_403_on_the_import_form(client, project, user, request):
    client.force_login(request.getfixturevalue(user))
    assert client.get(import_url(project)).status_code == 403
    assert client.post(import_url(project), {"file": llmbar_file(), "kind": "pairs"}).status_code == 403
    assert client.get(reverse("import-start")).status_code == 403
    assert Prompt.objects.count() == 0


def test_the_import_link_goes_straight_to_the_only_project(client, lee, project):
    client.force_login(lee)
    response = client.get(reverse("import-start"))
    assert response.status_code == 302
    assert response["Location"] == import_url(project)


# --- limits --------------------------------------------------------------------------


def test_a_file_declared_larger_than_the_limit_is_refused_on_the_form_before_it_is_read(
    client, lee, project, settings, monkeypatch
):
    from django.http import multipartparser

    settings.IMPORT_MAX_BYTES = 1000
    monkeypatch.setattr(multipartparser.MultiPartParser, "parse", lambda self: pytest.fail("the body was read"))
    client.force_login(lee)
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "x"}\n' * 10_000)
    response = client.post(import_url(project), {"file": upload, "kind": "prompts"})
    assert response.status_code == 413
    assert response.context["form"].errors == {
        "file": [
            "The file is larger than the import limit of 1,000 bytes (IMPORT_MAX_BYTES). "
            "Split it into smaller files, or import it with manage.py import_data."
        ]
    }
    assert "IMPORT_MAX_BYTES" in response.content.decode()
    assert Prompt.objects.count() == 0


def test_a_file_that_grows_past_the_limit_is_refused_on_the_form(client, lee, project, settings):
    settings.IMPORT_MAX_BYTES = 1000
    client.force_login(lee)
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "x"}\n' * 100)
    response = client.post(import_url(project), {"file": upload, "kind": "prompts", "source": "kept"})
    assert response.status_code == 413
    assert list(response.context["form"].errors) == ["file"]
    assert response.context["form"]["source"].value() == "kept"  # the other fields were read
    assert Prompt.objects.count() == 0


def test_the_form_still_checks_its_csrf_token(lee, project, settings):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(lee)
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "x"}\n')
    assert client.post(import_url(project), {"file": upload, "kind": "prompts"}).status_code == 403
    token = client.get(import_url(project)).context["csrf_token"]
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "x"}\n')
    response = client.post(import_url(project), {"file": upload, "kind": "prompts", "csrfmiddlewaretoken": token})
    assert response.status_code == 200 and response.context["report"].committed
    settings.IMPORT_MAX_BYTES = 10
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "y"}\n' * 10)
    response = client.post(import_url(project), {"file": upload, "kind": "prompts", "csrfmiddlewaretoken": token})
    assert response.status_code == 413


def test_the_form_says_how_big_a_file_may_be(client, lee, project, settings):
    settings.IMPORT_MAX_BYTES = 256 * 1024 * 1024
    client.force_login(lee)
    assert "At most 256 MiB." in client.get(import_url(project)).content.decode()


def test_the_report_shows_the_labels_not_stored_and_where(client, lee, project):
    lines = [
        {"input": "One?", "output_1": "1", "output_2": "one", "label": 1},
        {"input": "Two?", "output_1": "2", "label": 2},
    ]
    upload = SimpleUploadedFile("pairs.jsonl", "\n".join(json.dumps(r) for r in lines).encode())
    client.force_login(lee)
    response = client.post(import_url(project), {"file": upload, "kind": "pairs", "skip_invalid": "on"})
    html = response.content.decode()
    assert "<dt>Labels not stored</dt><dd>1 of 2</dd>" in html
    assert "1 label not stored, on line 2" in html


def test_the_report_says_in_words_how_many_pairs_are_held_and_lists_problems_in_file_order(client, lee, project):
    project.identity_terms = ["ChatGPT"]
    project.save()
    lines = [
        json.dumps({"input": "One?", "output_1": "I am chatgpt.", "output_2": "one"}),
        "not json",
        json.dumps({"input": "Three?", "output_1": "3"}),
        json.dumps({"input": "Four?", "output_1": "4", "output_2": "four", "label": "maybe"}),
        json.dumps({"input": "Five?", "output_1": "5", "output_2": "five", "deep": [[[[1]]]]}),
    ]
    upload = SimpleUploadedFile("pairs.jsonl", "\n".join(lines).encode())
    client.force_login(lee)
    response = client.post(import_url(project), {"file": upload, "kind": "pairs", "skip_invalid": "on"})
    html = response.content.decode()
    assert "1 pair is held back: an answer names a model" in html and "#flagged-samples" in html
    assert "identity_flagged_samples" not in html and "comparisons_held_back" not in html
    places = [e.line for e in response.context["report"].errors_in_file_order]
    assert places == sorted(places) and places[0] == 2
