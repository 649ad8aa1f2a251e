"""The one judgment path: the annotator's page and the REST API take and refuse the same
judgments, with the same limits and the same words, because both hand the verdict to
``annotation.judging``."""

from __future__ import annotations

import html
import re

import pytest

from annotation.assignment import AssignmentRefused, Refusal, assignment_next
from annotation.judging import (
    EDIT_MAX_CHARS,
    RATIONALE_MAX_CHARS,
    TIME_SPENT_MAX_MS,
    Verdict,
    client_rules,
    verdict_check,
)
from annotation.models import EditPolicy, Judgment
from tests.annotation.test_annotate_views import HX, make_pairs, submit_url
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

# (what is posted, in screen terms; the project's settings; the field refused, or None for accepted)
CASES = {
    "a side without a strength": ({"choice": "left"}, {}, "strength"),
    "a strength left over on a tie": ({"choice": "tie", "strength": "better"}, {}, "strength"),
    "a choice the project does not offer": ({"choice": "tie"}, {"allow_tie": False}, "choice"),
    "a missing safety label": ({"choice": "left", "strength": "better"}, {"require_safety": True}, "safety"),
    "a rationale over the limit": (
        {"choice": "left", "strength": "better", "rationale": "x" * (RATIONALE_MAX_CHARS + 1)},
        {},
        "rationale",
    ),
    "a rationale at the limit": (
        {"choice": "left", "strength": "better", "rationale": "x" * RATIONALE_MAX_CHARS},
        {},
        None,
    ),
    "an edit over the limit": (
        {"choice": "left", "strength": "better", "edit_text": "y" * (EDIT_MAX_CHARS + 1)},
        {"edit_policy": EditPolicy.OPTIONAL},
        "edit_text",
    ),
    "an edit where the project takes none": (
        {"choice": "left", "strength": "better", "edit_text": "better words"},
        {"edit_policy": EditPolicy.OFF},
        "edit_text",
    ),
    "an edit of a tie without its base": (
        {"choice": "tie", "edit_text": "better words"},
        {"edit_policy": EditPolicy.OPTIONAL},
        "edit_base",
    ),
    "both bad without the required rewrite": ({"choice": "both_bad"}, {}, "edit_text"),
    "a rewrite that is the original answer": (
        {"choice": "both_bad", "edit_text": "Baseline answer 0.", "edit_base": "left"},
        {},
        None,
    ),
    "a negative time": ({"choice": "left", "strength": "better", "time_spent_ms": -5}, {}, "time_spent_ms"),
    "a time of a day and more": ({"choice": "left", "strength": "better", "time_spent_ms": 2**40}, {}, None),
}


def page_errors(html: str) -> dict[str, list[str]]:
    """The errors the page shows: per field, and on top of the form (general ones)."""
    errors = {
        field: [text]
        for field, text in re.findall(r'data-error-for="(\w+)" role="alert">([^<]+)</p>', html)
        if text.strip()
    }
    general = re.findall(r'<div class="alert alert-error"[^>]*>\s*(?:<p>)?([^<]+)', html)
    return errors | ({"general": [g.strip() for g in general]} if general else {})


def _page(client, project, assignment, data):
    response = client.post(submit_url(project, assignment.pk), data, **HX)
    if response.status_code == 422:
        return page_errors(html.unescape(response.content.decode()))
    assert response.status_code in (200, 302), response.status_code
    return {}


def _api(client, project, assignment, data):
    response = client.post(f"/api/v1/assignments/{assignment.pk}/judgment/", data, format="json")
    if response.status_code == 400:
        body = response.json()
        return {"choice" if field == "preferred" else field: messages for field, messages in body.items()}
    assert response.status_code == 201, response.json()
    return {}


@pytest.mark.parametrize("case", list(CASES))
def test_the_page_and_the_api_refuse_the_same_judgments_with_the_same_words(case, client, round_, alice, bob):
    data, settings, field = CASES[case]
    project = round_.project
    for name, value in settings.items():
        setattr(project, name, value)
    project.save()
    make_pairs(round_, 2)
    project.overlap = 1
    client.force_login(alice)
    page_assignment = assignment_next(annotator=alice, project=project)
    api_assignment = assignment_next(annotator=bob, project=project)
    if case == "a rewrite that is the original answer":
        # The base answer of each pair is its own baseline text.
        from annotation.models import Sample

        base = Sample.objects.get(pk=api_assignment.comparison.sample_a_id).text
        data_api = {**data, "edit_base": "left" if api_assignment.left == "A" else "right", "edit_text": base}
        data_page = {
            **data,
            "edit_base": "left" if page_assignment.left == "A" else "right",
            "edit_text": Sample.objects.get(pk=page_assignment.comparison.sample_a_id).text,
        }
    else:
        data_api = data_page = data

    page_errors = _page(client, project, page_assignment, data_page)
    api_errors = _api(token_client(bob), project, api_assignment, data_api)

    if case == "a rewrite that is the original answer":
        assert page_errors == api_errors and set(page_errors) == {"edit_text"}
        assert "same as the answer it starts from" in page_errors["edit_text"][0]
        return
    if field is None:
        assert page_errors == api_errors == {}
        assert Judgment.objects.count() == 2
        if "time_spent_ms" in data:
            assert set(Judgment.objects.values_list("time_spent_ms", flat=True)) == {TIME_SPENT_MAX_MS}
        return
    assert field in api_errors, api_errors
    # The page shows the same words: beside the field, or on top of the form when the page
    # has no place for that field (an edit where the project takes none, a bad time).
    assert page_errors.get(field, page_errors.get("general")) == api_errors[field], (page_errors, api_errors)
    assert not Judgment.objects.exists()


def test_the_skip_reason_has_one_limit_for_page_and_api(client, round_, alice, bob):
    from tests.annotation.test_annotate_views import skip_url

    project = round_.project
    make_pairs(round_, 2)
    client.force_login(alice)
    page_assignment = assignment_next(annotator=alice, project=project)
    api_assignment = assignment_next(annotator=bob, project=project)
    reason = "r" * 501

    page = client.post(skip_url(project, page_assignment.pk), {"reason": reason}, **HX)
    api = token_client(bob).post(f"/api/v1/assignments/{api_assignment.pk}/skip/", {"reason": reason}, format="json")

    assert page.status_code == 422 and api.status_code == 400
    assert page_errors(html.unescape(page.content.decode()))["reason"] == [api.json()["detail"]]
    assert "under 500 characters" in api.json()["detail"]


def test_the_rules_the_page_script_follows_are_the_services_own(project):
    project.allow_tie = False
    project.require_safety = True
    project.edit_policy = EditPolicy.ALWAYS
    rules = client_rules(project)

    assert rules["choices"] == ["left", "right", "both_bad", "cant_judge"]
    assert rules["strength_for"] == ["left", "right"]
    assert rules["safety_for"] == ["left", "right", "both_bad"]  # can't judge needs no safety label
    assert rules["edit_required_for"] == ["left", "right", "both_bad"]
    assert (rules["rationale_max"], rules["edit_max"]) == (RATIONALE_MAX_CHARS, EDIT_MAX_CHARS)


def test_imported_labels_pass_the_same_check_without_what_other_tools_do_not_ask(project):
    project.allow_both_bad = False
    assert verdict_check(Verdict(preferred="A"), project, imported=True).strength == ""
    with pytest.raises(AssignmentRefused) as refused:
        verdict_check(Verdict(preferred="both_bad"), project, imported=True)
    assert refused.value.refusal is Refusal.INVALID and "preferred" in refused.value.message_dict
    with pytest.raises(AssignmentRefused):
        verdict_check(Verdict(preferred="tie", strength="better"), project, imported=True)
    with pytest.raises(AssignmentRefused):
        verdict_check(Verdict(preferred="A", rationale="z" * (RATIONALE_MAX_CHARS + 1)), project, imported=True)


def test_each_refusal_kind_has_one_status_and_says_whether_the_pair_is_gone():
    assert [(r.value, r.http_status, r.gone) for r in Refusal] == [
        ("foreign", 404, True),
        ("stale", 409, True),
        ("closed", 409, True),
        ("reason", 400, False),
        ("invalid", 400, False),
    ]
