"""The annotator's workspace in a real browser, driven by the keyboard only."""

from __future__ import annotations

import pytest

from annotation.judging import screen_to_sample
from annotation.models import Assignment, Comparison, Edit, Judgment, Prompt, Sample
from core.text import messages_hash, text_hash
from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]

XSS = '<script>window.__xss=1</script> and <img src=x onerror="window.__xss=2">'
ANSWERS = [
    ("Paris is the capital of **France**.", "The capital of France is Lyon."),
    ("Water boils at 100 °C at sea level.", "Water boils at 90 °C.\n\n```python\nprint('boiling')  # hot\n```"),
    (f"Here is the markup you asked for: {XSS}", "I can't repeat markup."),
    ("Use `git stash` to set changes aside.", "Delete the folder and clone again."),
]
EDIT = " Fixed by a human reviewer."

SHOWN_ID = "document.querySelector('#pair-slot [data-pair-root]').dataset.assignmentId"


def seed(round_) -> None:
    for i, (text_a, text_b) in enumerate(ANSWERS):
        messages = [{"role": "user", "content": f"Question {i}: answer briefly."}]
        prompt = Prompt.objects.create(project=round_.project, messages=messages, content_hash=messages_hash(messages))
        a = Sample.objects.create(
            prompt=prompt, model_version=round_.baseline, text=text_a, text_hash=text_hash(text_a)
        )
        b = Sample.objects.create(
            prompt=prompt, model_version=round_.candidate, text=text_b, text_hash=text_hash(text_b)
        )
        Comparison.objects.create(round=round_, prompt=prompt, sample_a=a, sample_b=b)


def shown(page) -> str:
    return page.evaluate(SHOWN_ID)


def saved_and_moved_on(page, previous: str) -> str:
    """Wait until the server confirmed the submission and another pair is on screen."""
    wait_until(
        page, f"prev => !document.getElementById('workspace').dataset.saving && {SHOWN_ID} !== prev", arg=previous
    )
    return shown(page)


def quiet(page) -> None:
    """Wait until the page has no request in flight, so none runs into the database teardown."""
    wait_until(
        page,
        "!document.getElementById('workspace').dataset.saving"
        " && document.getElementById('workspace').dataset.prefetch !== 'loading'",
    )
    page.wait_for_load_state("networkidle")


def xss_shown_as_text(page) -> bool:
    return page.evaluate("document.getElementById('pair-slot').innerText.includes('<script>window.__xss=1</script>')")


def test_an_annotator_judges_three_pairs_with_the_keyboard_only(live_server, page, alice, round_, artifacts):
    seed(round_)
    slug = round_.project.slug

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/annotate/{slug}/")
    # The stylesheet and both scripts loaded, and the next pair was prefetched behind this one.
    assert page.evaluate("getComputedStyle(document.querySelector('.decision')).position") == "sticky"
    assert page.evaluate("typeof window.htmx") == "object"
    wait_until(page, "document.getElementById('workspace').dataset.prefetch === 'ready'")
    page.evaluate("document.activeElement && document.activeElement.blur()")

    seen_xss_as_text = xss_shown_as_text(page)
    done: list[tuple[int, str, str]] = []  # (assignment id, screen choice, strength)

    # 1: Left is better, "better".
    first = shown(page)
    for key in ("1", "w"):
        page.keyboard.press(key)
    assert page.get_attribute('[data-set="choice"][data-value="left"]', "aria-pressed") == "true"
    page.keyboard.press("Enter")
    done.append((int(first), "left", "better"))
    second = saved_and_moved_on(page, first)
    seen_xss_as_text |= xss_shown_as_text(page)

    # 2: Right is better, "significantly".
    for key in ("2", "q"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    done.append((int(second), "right", "significantly"))
    third = saved_and_moved_on(page, second)
    seen_xss_as_text |= xss_shown_as_text(page)

    # 3: Both bad, then an edit of the answer offered first (Left), submitted from the editor.
    page.keyboard.press("4")
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.matches('[data-edit-text]')")
    page.keyboard.type(EDIT)
    wait_until(
        page,
        "document.querySelector('#pair-slot [data-diff] ins') && "
        "document.querySelector('#pair-slot [data-diff] ins').textContent.includes('human reviewer')",
    )
    page.screenshot(path=str(artifacts / "annotate.png"))
    page.keyboard.press("Control+Enter")
    done.append((int(third), "both_bad", ""))
    fourth = saved_and_moved_on(page, third)
    seen_xss_as_text |= xss_shown_as_text(page)
    quiet(page)
    assert len({first, second, third, fourth}) == 4  # never the same pair twice

    # The database holds three judgments, in sample terms, and one edit.
    judgments = {j.assignment_id: j for j in Judgment.objects.select_related("assignment").all()}
    assert sorted(judgments) == sorted(assignment_id for assignment_id, _, _ in done)
    for assignment_id, choice, strength in done:
        judgment = judgments[assignment_id]
        left = Assignment.objects.get(pk=assignment_id).left
        assert judgment.annotator == alice
        assert (judgment.preferred, judgment.strength, judgment.left) == (
            screen_to_sample(choice, left),
            strength,
            left,
        )
        assert judgment.time_spent_ms is not None and judgment.time_spent_ms > 0
    edit = Edit.objects.get()
    assert edit.judgment.assignment_id == int(third)
    assert edit.text.endswith(EDIT.strip())
    comparison = edit.judgment.comparison
    shown_left = comparison.sample_a if edit.judgment.left == "A" else comparison.sample_b
    assert edit.base_sample == shown_left
    assert edit.text == (shown_left.text + EDIT).strip()

    # Model text with markup was shown as text and never ran.
    assert seen_xss_as_text
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("[...document.scripts].filter(s => !s.src || s.textContent.includes('__xss')).length") == 0
    assert page.evaluate("document.querySelectorAll('img, [onerror]').length") == 0
    assert page.js_errors == []


def test_help_guidelines_and_skip_work_from_the_keyboard(live_server, page, alice, round_):
    seed(round_)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/annotate/{round_.project.slug}/")
    page.evaluate("document.activeElement && document.activeElement.blur()")

    page.keyboard.press("?")
    assert page.evaluate("document.getElementById('help').open")
    page.keyboard.press("Escape")
    assert not page.evaluate("document.getElementById('help').open")

    page.keyboard.press("g")
    assert page.is_visible("#guidelines")
    assert "better" in page.inner_text("#guidelines")
    page.keyboard.press("g")
    assert not page.is_visible("#guidelines")

    # Enter with nothing chosen submits nothing and says what is missing.
    first = shown(page)
    page.keyboard.press("Enter")
    assert page.is_visible('#pair-slot [data-error-for="choice"]')

    # Skip: S opens the reason field, Enter with no reason is refused, with one it skips.
    page.keyboard.press("Shift+S")
    assert page.evaluate("document.activeElement.matches('[data-skip-reason]')")
    page.keyboard.press("Enter")
    assert page.is_visible('#pair-slot [data-error-for="reason"]')
    page.keyboard.type("I don't read this language")
    page.keyboard.press("Enter")
    saved_and_moved_on(page, first)
    quiet(page)
    assignment = Assignment.objects.get(pk=int(first))
    assert (assignment.status, assignment.skip_reason) == ("skipped", "I don't read this language")
    assert not Judgment.objects.exists()
    assert page.js_errors == []
