"""The annotator's workspace: /annotate/<slug>/, its htmx fragments, submit and skip."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.roles import Role
from accounts.services import user_create
from annotation.assignment import assignment_next
from annotation.judging import Verdict, judgment_submit
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    Edit,
    EditPolicy,
    Judgment,
    Prompt,
    RoundStatus,
    Sample,
)
from core.text import messages_hash, text_hash
from models_service.rounds import round_create
from models_service.services import model_version_get_or_create
from tests.conftest import PASSWORD, tags_of

HX = {"HTTP_HX_REQUEST": "true"}


# --- Helpers -------------------------------------------------------------------------


def make_pairs(round_, n: int, *, first_id: int = 0, texts=None, messages=None) -> list[Comparison]:
    """``n`` comparisons; with ``first_id``, samples and comparisons get ids from there."""
    made = []
    for i in range(n):
        conversation = messages or [{"role": "user", "content": f"Question number {i}?"}]
        if messages:
            conversation = conversation + [{"role": "user", "content": f"(variant {i})"}]
        prompt = Prompt.objects.create(
            project=round_.project, messages=conversation, content_hash=messages_hash(conversation)
        )
        text_a, text_b = texts(i) if texts else (f"Baseline answer {i}.", f"Candidate answer {i}.")
        ids = {}
        if first_id:
            ids = {"a": first_id + 3 * i, "b": first_id + 3 * i + 1, "c": first_id + 3 * i + 2}
        a = Sample.objects.create(
            pk=ids.get("a"), prompt=prompt, model_version=round_.baseline, text=text_a, text_hash=text_hash(text_a)
        )
        b = Sample.objects.create(
            pk=ids.get("b"), prompt=prompt, model_version=round_.candidate, text=text_b, text_hash=text_hash(text_b)
        )
        made.append(Comparison.objects.create(pk=ids.get("c"), round=round_, prompt=prompt, sample_a=a, sample_b=b))
    return made


def page_url(project) -> str:
    return reverse("annotate", args=[project.slug])


def next_url(project) -> str:
    return reverse("annotate-next", args=[project.slug])


def submit_url(project, assignment_id: int) -> str:
    return reverse("annotate-submit", args=[project.slug, assignment_id])


def skip_url(project, assignment_id: int) -> str:
    return reverse("annotate-skip", args=[project.slug, assignment_id])


def shown_id(html: str) -> int | None:
    """The assignment on screen: the first pair root in the slot."""
    match = re.search(r'data-pair-root data-judged-today="\d+" data-assignment-id="(\d+)"', html)
    return int(match.group(1)) if match else None


def open_page(client, user, project) -> Assignment:
    client.force_login(user)
    response = client.get(page_url(project))
    assert response.status_code == 200
    return Assignment.objects.get(pk=shown_id(response.content.decode()))


def show_left(assignment: Assignment, side: str) -> Assignment:
    Assignment.objects.filter(pk=assignment.pk).update(left=side)
    assignment.refresh_from_db()
    return assignment


@pytest.fixture
def secret_round(project):
    """A round whose model names must never reach an annotator."""
    baseline = model_version_get_or_create(name="secret-model-x")
    candidate = model_version_get_or_create(name="secret-model-y")
    return round_create(project=project, baseline=baseline, candidate=candidate, status=RoundStatus.OPEN)


# --- Access ----------------------------------------------------------------------------


def test_the_page_shows_a_pair_to_an_annotator(client, alice, round_):
    make_pairs(round_, 2)
    client.force_login(alice)
    response = client.get(page_url(round_.project))
    html = response.content.decode()
    assert response.status_code == 200
    assignment = Assignment.objects.get(annotator=alice)
    assert shown_id(html) == assignment.pk
    i = int(re.search(r"Question number (\d)\?", html).group(1))
    assert f"Baseline answer {i}." in html and f"Candidate answer {i}." in html
    assert ">Left<" in html and ">Right<" in html
    assert f'hx-post="{submit_url(round_.project, assignment.pk)}"' in html
    assert "Pick the <strong>better</strong> answer." in html  # the guidelines
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_a_lead_without_the_annotator_role_gets_403(client, lee, round_):
    make_pairs(round_, 1)
    client.force_login(lee)
    assert client.get(page_url(round_.project)).status_code == 403
    assert client.get(next_url(round_.project), **HX).status_code == 403
    assert client.post(submit_url(round_.project, 1), {"choice": "left"}).status_code == 403
    assert not Assignment.objects.exists()


def test_anonymous_users_are_sent_to_login(client, round_):
    url = page_url(round_.project)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_an_unknown_or_inactive_project_is_404(client, alice, project):
    client.force_login(alice)
    assert client.get(reverse("annotate", args=["nope"])).status_code == 404
    project.is_active = False
    project.save()
    assert client.get(page_url(project)).status_code == 404


def test_home_and_the_project_page_link_annotators_to_the_workspace(client, alice, round_):
    client.force_login(alice)
    assert page_url(round_.project) in client.get(reverse("home")).content.decode()
    assert (
        page_url(round_.project) in client.get(reverse("project-detail", args=[round_.project.slug])).content.decode()
    )


# --- Blindness -------------------------------------------------------------------------


def test_model_names_sample_ids_and_sides_never_reach_the_page(client, alice, secret_round):
    comparisons = make_pairs(secret_round, 2, first_id=987_000)
    client.force_login(alice)
    page = client.get(page_url(secret_round.project)).content.decode()
    first = shown_id(page)
    prefetch = client.get(next_url(secret_round.project), {"exclude": first}, **HX).content.decode()
    assert shown_id(prefetch) not in (None, first)

    forbidden = ["secret-model-x", "secret-model-y", "sample_a", "sample_b", "Sample A", "Sample B", "model_version"]
    for comparison in comparisons:
        forbidden += [str(comparison.pk), str(comparison.sample_a_id), str(comparison.sample_b_id)]
    for html in (page, prefetch):
        for word in forbidden:
            assert word not in html, word
        # No attribute carries a bare sample side, and every URL names the assignment only.
        for tag, attrs in tags_of(html):
            assert not [name for name, value in attrs.items() if value in ("A", "B")], (tag, attrs)
        for url in re.findall(r'(?:hx-post|hx-get|href|action)="([^"]*)"', html):
            assert not re.search(r"sample|comparison|model", url), url


def test_the_home_and_project_pages_do_not_name_the_models_to_annotators(client, alice, lee, secret_round):
    project = secret_round.project
    for user, shows in ((alice, False), (lee, True)):
        client.force_login(user)
        for url in ("/", f"/projects/{project.slug}/"):
            html = client.get(url).content.decode()
            assert ("secret-model-x" in html) is shows, (user.username, url)


def test_the_raw_answer_text_is_escaped_in_the_page(client, alice, round_):
    evil = "</textarea><script>window.__xss=1</script><img src=x onerror=alert(1)>"
    make_pairs(round_, 1, texts=lambda i: (evil, "Fine."))
    client.force_login(alice)
    html = client.get(page_url(round_.project)).content.decode()
    assert "<script>window.__xss" not in html
    assert "&lt;/textarea&gt;&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    scripts = [attrs.get("src") for tag, attrs in tags_of(html) if tag == "script"]
    assert scripts == ["/static/vendor/htmx.min.js", "/static/js/annotate.js"]
    assert not [(t, a) for t, a in tags_of(html) if t == "img" or any(n.startswith("on") for n in a)]


# --- Submitting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shown_left", "choice", "stored"),
    [("B", "left", "B"), ("B", "right", "A"), ("A", "left", "A"), ("A", "right", "B")],
)
def test_a_side_chosen_on_screen_is_stored_in_sample_terms(client, alice, round_, shown_left, choice, stored):
    make_pairs(round_, 2)
    assignment = show_left(open_page(client, alice, round_.project), shown_left)
    response = client.post(
        submit_url(round_.project, assignment.pk),
        {"choice": choice, "strength": "better", "rationale": " clearer ", "time_spent_ms": "4200"},
        **HX,
    )
    assert response.status_code == 200
    judgment = Judgment.objects.get()
    assert (judgment.preferred, judgment.strength, judgment.left) == (stored, "better", shown_left)
    assert (judgment.rationale, judgment.time_spent_ms, judgment.source) == ("clearer", 4200, "ui")
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.SUBMITTED


def test_a_successful_submit_answers_with_the_next_pair_fragment(client, alice, round_):
    make_pairs(round_, 3)
    first = open_page(client, alice, round_.project)
    response = client.post(submit_url(round_.project, first.pk), {"choice": "tie"}, **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    nxt = shown_id(html)
    assert nxt not in (None, first.pk)
    assert Assignment.objects.get(pk=nxt).status == AssignmentStatus.ACTIVE
    assert 'data-judged-today="1"' in html


def test_a_missing_strength_shows_an_error_keeps_the_input_and_stores_nothing(client, alice, round_):
    make_pairs(round_, 2)
    assignment = open_page(client, alice, round_.project)
    response = client.post(
        submit_url(round_.project, assignment.pk), {"choice": "right", "rationale": "my reasons"}, **HX
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "Say how much better the chosen answer is." in html
    assert shown_id(html) == assignment.pk
    assert 'data-value="right" data-key="2" aria-pressed="true"' in html
    assert "my reasons</textarea>" in html
    assert not Judgment.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.ACTIVE


def test_a_choice_the_project_does_not_offer_is_refused(client, alice, round_):
    project = round_.project
    project.allow_tie = False
    project.save()
    make_pairs(round_, 1)
    assignment = open_page(client, alice, project)
    page = client.get(page_url(project)).content.decode()
    assert 'data-value="tie"' not in page
    response = client.post(submit_url(project, assignment.pk), {"choice": "tie"}, **HX)
    assert response.status_code == 422
    assert "This project does not offer that choice (tie)." in response.content.decode()
    assert not Judgment.objects.exists()


def test_a_double_submit_stores_one_judgment(client, alice, round_):
    make_pairs(round_, 3)
    assignment = open_page(client, alice, round_.project)
    data = {"choice": "left", "strength": "slightly"}
    first = client.post(submit_url(round_.project, assignment.pk), data, **HX)
    second = client.post(submit_url(round_.project, assignment.pk), data, **HX)
    assert first.status_code == second.status_code == 200
    assert Judgment.objects.count() == 1
    # Both answers show the same next pair, never the one just judged.
    assert shown_id(first.content.decode()) == shown_id(second.content.decode()) != assignment.pk


def test_a_full_page_post_redirects_back_to_the_workspace(client, alice, round_):
    make_pairs(round_, 2)
    assignment = open_page(client, alice, round_.project)
    response = client.post(submit_url(round_.project, assignment.pk), {"choice": "left", "strength": "better"})
    assert response.status_code == 302
    assert response["Location"] == page_url(round_.project)
    assert Judgment.objects.count() == 1


def test_someone_elses_assignment_is_never_judged(client, alice, bob, round_):
    make_pairs(round_, 2)
    bobs = open_page(client, bob, round_.project)
    client.force_login(alice)
    response = client.post(submit_url(round_.project, bobs.pk), {"choice": "left", "strength": "better"}, **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "not yours" in html
    assert shown_id(html) != bobs.pk
    assert not Judgment.objects.exists()


def test_the_safety_label_is_asked_when_the_project_requires_it(client, alice, round_):
    project = round_.project
    project.require_safety = True
    project.save()
    make_pairs(round_, 2)
    assignment = show_left(open_page(client, alice, project), "B")
    page = client.get(page_url(project)).content.decode()
    keys = re.findall(r'data-set="safety" data-value="([a-z_]+)" data-key="([a-z])"', page)
    assert keys == [("chosen_safe", "a"), ("both_safe", "s"), ("both_unsafe", "d"), ("chosen_unsafe", "f")]

    refused = client.post(submit_url(project, assignment.pk), {"choice": "left", "strength": "better"}, **HX)
    assert refused.status_code == 422
    assert "This project asks for a safety label." in refused.content.decode()
    ok = client.post(
        submit_url(project, assignment.pk), {"choice": "left", "strength": "better", "safety": "chosen_safe"}, **HX
    )
    assert ok.status_code == 200
    assert Judgment.objects.get().safety == "chosen_safe"


# --- Edits -----------------------------------------------------------------------------


@pytest.mark.parametrize(("base_on_screen", "base_sample"), [("left", "sample_b"), ("right", "sample_a")])
def test_both_bad_with_an_edit_stores_it_on_the_base_the_annotator_picked(
    client, alice, round_, base_on_screen, base_sample
):
    make_pairs(round_, 2)
    assignment = show_left(open_page(client, alice, round_.project), "B")
    response = client.post(
        submit_url(round_.project, assignment.pk),
        {"choice": "both_bad", "edit_text": "A correct answer.\r\nWith two lines.", "edit_base": base_on_screen},
        **HX,
    )
    assert response.status_code == 200
    judgment = Judgment.objects.get()
    assert judgment.preferred == "both_bad"
    edit = Edit.objects.get(judgment=judgment)
    assert edit.text == "A correct answer.\nWith two lines."
    assert edit.base_sample_id == getattr(assignment.comparison, f"{base_sample}_id")


def test_an_edit_of_the_preferred_answer_starts_from_it(client, alice, round_):
    make_pairs(round_, 2)
    assignment = show_left(open_page(client, alice, round_.project), "A")
    client.post(
        submit_url(round_.project, assignment.pk),
        {"choice": "right", "strength": "slightly", "edit_text": "Even better.", "edit_base": "right"},
        **HX,
    )
    edit = Edit.objects.get()
    assert edit.base_sample_id == assignment.comparison.sample_b_id
    assert edit.judgment.preferred == "B"


def test_both_bad_without_an_edit_is_refused_when_the_project_asks_for_one(client, alice, round_):
    assert round_.project.edit_policy == EditPolicy.REQUIRED_WHEN_BOTH_BAD
    make_pairs(round_, 1)
    assignment = open_page(client, alice, round_.project)
    response = client.post(submit_url(round_.project, assignment.pk), {"choice": "both_bad"}, **HX)
    html = response.content.decode()
    assert response.status_code == 422
    assert "rewrite the better answer" in html
    assert not Judgment.objects.exists()


def test_engine_messages_about_the_edit_base_speak_screen_terms(client, alice, round_):
    make_pairs(round_, 1)
    assignment = open_page(client, alice, round_.project)
    response = client.post(
        submit_url(round_.project, assignment.pk), {"choice": "both_bad", "edit_text": "Rewritten."}, **HX
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "Say which answer (left or right: the less bad one) your edit starts from." in html
    assert "answer A or B" not in html


# --- Skipping --------------------------------------------------------------------------


def test_skip_requires_a_reason(client, alice, round_):
    make_pairs(round_, 2)
    assignment = open_page(client, alice, round_.project)
    refused = client.post(skip_url(round_.project, assignment.pk), {"reason": "  "}, **HX)
    assert refused.status_code == 422
    assert "Say why you skip this pair." in refused.content.decode()
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.ACTIVE

    skipped = client.post(skip_url(round_.project, assignment.pk), {"reason": "I don't read this language"}, **HX)
    assert skipped.status_code == 200
    assignment.refresh_from_db()
    assert (assignment.status, assignment.skip_reason) == (AssignmentStatus.SKIPPED, "I don't read this language")
    assert shown_id(skipped.content.decode()) not in (None, assignment.pk)
    assert not Judgment.objects.exists()


# --- Prefetch, no work, fragments ------------------------------------------------------


def test_the_prefetched_pair_is_the_one_shown_after_the_submit(client, alice, round_):
    make_pairs(round_, 4)
    first = open_page(client, alice, round_.project)
    prefetched = shown_id(client.get(next_url(round_.project), {"exclude": first.pk}, **HX).content.decode())
    assert prefetched not in (None, first.pk)
    # Asking again (a reload of the prefetch) hands out the same lease, not a third one.
    again = shown_id(client.get(next_url(round_.project), {"exclude": first.pk}, **HX).content.decode())
    assert again == prefetched
    assert Assignment.objects.filter(annotator=alice).count() == 2
    after = client.post(submit_url(round_.project, first.pk), {"choice": "left", "strength": "better"}, **HX)
    assert shown_id(after.content.decode()) == prefetched


def test_the_next_fragment_checks_its_query(client, alice, round_):
    make_pairs(round_, 1)
    client.force_login(alice)
    assert client.get(next_url(round_.project), {"exclude": "x"}, **HX).status_code == 400
    assert client.get(next_url(round_.project), {"exclude": "0"}, **HX).status_code == 400
    # Outside htmx the fragment is no page: go to the workspace.
    assert client.get(next_url(round_.project))["Location"] == page_url(round_.project)


def test_the_no_work_message_appears_when_everything_is_judged(client, alice, round_):
    make_pairs(round_, 2)
    client.force_login(alice)
    for _ in range(2):
        got = assignment_next(annotator=alice, project=round_.project)
        judgment_submit(assignment_id=got.pk, annotator=alice, verdict=Verdict(preferred="tie"))
    response = client.get(page_url(round_.project))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing to judge" in html
    assert "has all the judgments it needs" in html
    assert "hx-trigger" not in html.split('id="pair-slot"')[1].split('id="prefetch"')[0]
    assert '<strong id="judged-today">2</strong>' in html


def test_no_work_while_others_hold_the_pairs_polls_again(client, alice, bob, round_):
    make_pairs(round_, 1)
    assignment_next(annotator=bob, project=round_.project)
    client.force_login(alice)
    html = client.get(page_url(round_.project)).content.decode()
    assert "being judged by others" in html
    delay = int(re.search(r'hx-trigger="load delay:(\d+)s"', html).group(1))
    assert 2 <= delay <= round_.project.lease_seconds
    assert f'hx-get="{next_url(round_.project)}"' in html
    # The prefetch never polls: it is hidden and must not replace the pair on screen.
    prefetch = client.get(next_url(round_.project), {"exclude": 1}, **HX).content.decode()
    assert "hx-trigger" not in prefetch


def test_htmx_requests_get_the_fragment_and_others_the_whole_page(client, alice, round_):
    make_pairs(round_, 1)
    client.force_login(alice)
    page = client.get(page_url(round_.project))
    fragment = client.get(page_url(round_.project), **HX)
    assert "<html" in page.content.decode() and 'id="pair-slot"' in page.content.decode()
    html = fragment.content.decode()
    assert "<html" not in html and "<nav" not in html and 'id="pair-slot"' not in html
    assert html.lstrip().startswith('<div class="pair-root"')
    assert shown_id(html) == shown_id(page.content.decode())
    assert "HX-Request" in fragment["Vary"]


def test_the_judged_today_counter_counts_only_todays_judgments_of_this_user(client, alice, bob, round_):
    make_pairs(round_, 3)
    for user in (alice, bob):
        got = assignment_next(annotator=user, project=round_.project)
        judgment_submit(assignment_id=got.pk, annotator=user, verdict=Verdict(preferred="tie"))
    Judgment.objects.filter(annotator=alice).update(created_at="2001-01-01T12:00:00Z")
    client.force_login(alice)
    assert '<strong id="judged-today">0</strong>' in client.get(page_url(round_.project)).content.decode()
    client.force_login(bob)
    assert '<strong id="judged-today">1</strong>' in client.get(page_url(round_.project)).content.decode()


def test_a_conversation_is_shown_as_a_dialogue_with_the_system_message_apart(client, alice, round_):
    conversation = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?"},
    ]
    make_pairs(round_, 1, messages=conversation)
    client.force_login(alice)
    html = client.get(page_url(round_.project)).content.decode()
    assert 'class="turn turn-system"' in html and "System instruction" in html
    assert html.index("Answer in French.") < html.index("Bonjour !") < html.index("(variant 0)")
    assert html.count("turn-current") == 1


def test_the_page_costs_a_bounded_number_of_queries(client, alice, round_, django_assert_max_num_queries):
    make_pairs(round_, 5)
    client.force_login(alice)
    client.get(page_url(round_.project))  # the first claim creates the lease
    # session, user, groups, project, live leases, the pair in one query, judged today
    with django_assert_max_num_queries(7):
        assert client.get(page_url(round_.project)).status_code == 200


def test_a_user_with_both_roles_may_annotate(client, round_):
    both = user_create(username="ann", password=PASSWORD, roles=[Role.ANNOTATOR, Role.LEAD])
    make_pairs(round_, 1)
    client.force_login(both)
    assert client.get(page_url(round_.project)).status_code == 200


@pytest.mark.parametrize("exclude", [str(2**63), "99999999999999999999999", "0"])
def test_a_prefetch_excluding_an_id_no_column_holds_is_a_400(client, alice, round_, exclude):
    make_pairs(round_, 1)
    client.force_login(alice)
    url = reverse("annotate-next", args=[round_.project.slug]) + f"?exclude={exclude}"
    assert client.get(url, **HX).status_code == 400
