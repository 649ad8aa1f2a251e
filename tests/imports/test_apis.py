"""The import API under bad input and big files: JSON answers, a size limit checked before
the file is read, every lost label counted (imports/apis.py, imports/uploads.py)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import multipartparser

from annotation.models import Judgment, Prompt
from tests.conftest import token_client


def url(project) -> str:
    return f"/api/v1/projects/{project.slug}/imports/"


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def pair(i: int, **extra) -> dict:
    return {"input": f"Question {i}?", "output_1": f"one {i}", "output_2": f"two {i}", **extra}


def test_a_file_declared_larger_than_the_limit_is_a_413_before_its_body_is_read(project, lee, settings, monkeypatch):
    settings.IMPORT_MAX_BYTES = 1000
    monkeypatch.setattr(multipartparser.MultiPartParser, "parse", lambda self: pytest.fail("the body was read"))
    data = b'{"prompt": "x"}\n' * 10_000  # 160 kB, past the limit and the room for the other fields
    response = token_client(lee).post(
        url(project), {"file": upload("prompts.jsonl", data), "kind": "prompts"}, format="multipart"
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["max_bytes"] == 1000 and "IMPORT_MAX_BYTES" in body["detail"]
    assert Prompt.objects.count() == 0


def test_a_file_that_grows_past_the_limit_as_it_arrives_is_a_413(project, lee, settings):
    settings.IMPORT_MAX_BYTES = 1000
    lines = [b'{"prompt": "q%03d"}\n' % i for i in range(100)]
    data = b"".join(lines)  # 1.9 kB: past the file limit only
    response = token_client(lee).post(
        url(project), {"file": upload("prompts.jsonl", data), "kind": "prompts"}, format="multipart"
    )
    assert response.status_code == 413
    assert Prompt.objects.count() == 0
    small = token_client(lee).post(
        url(project), {"file": upload("prompts.jsonl", b"".join(lines[:50])), "kind": "prompts"}, format="multipart"
    )
    assert small.status_code == 201, small.content
    assert Prompt.objects.count() == 50


def test_the_limit_holds_for_a_session_whose_csrf_check_reads_the_form(project, lee, settings):
    from rest_framework.test import APIClient

    settings.IMPORT_MAX_BYTES = 1000
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(lee)
    client.get(f"/projects/{project.slug}/import/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    data = b'{"prompt": "x"}\n' * 100
    response = client.post(
        url(project),
        {"file": upload("prompts.jsonl", data), "kind": "prompts"},
        format="multipart",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 413
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    "name,data,where",
    [
        ("pairs.json", b"[" * 5000 + b"]" * 5000, {"line": None, "item": 1}),
        ("pairs.json", b'[{"input": "a lone \\ud800 surrogate", "output_1": "a", "output_2": "b"}]', {"item": 1}),
        ("pairs.jsonl", b'{"input": "a NUL \\u0000", "output_1": "a", "output_2": "b"}\n', {"line": 1}),
        ("pairs.json", b'[{"input": "q", "output_1": "a", "output_2": "b"}] trailing', {"item": 2}),
        ("pairs.csv", b"input,output_1,output_2\ncaf\xe9,a,b\n", {"line": 2}),
    ],
)
def test_a_file_no_database_could_store_is_a_json_400_naming_the_place(project, lee, name, data, where):
    response = token_client(lee).post(url(project), {"file": upload(name, data), "kind": "pairs"}, format="multipart")
    assert response.status_code == 400
    report = response.json()
    assert report["committed"] is False
    assert {key: report["errors"][0][key] for key in where} == where
    assert Prompt.objects.count() == 0


def test_the_report_counts_and_places_every_label_not_stored(project, lee):
    lines = [
        pair(1, labels={"w7": "A"}, judgments=[{"annotator": "w7", "preferred": "B", "strength": "better"}]),
        pair(2, label=2),
        {"input": "Three?", "output_1": "3", "label": 1},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    response = token_client(lee).post(
        url(project),
        {"file": upload("pairs.jsonl", data), "kind": "pairs", "source": "acme", "skip_invalid": "true"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    report = response.json()
    assert (report["labels_read"], report["labels_not_stored"]) == (4, 2)
    assert report["labels_not_stored_at"] == [
        {"line": 1, "item": None, "count": 1},
        {"line": 3, "item": None, "count": 1},
    ]
    assert report["labels_not_stored_truncated"] is False
    assert Judgment.objects.count() == 2
