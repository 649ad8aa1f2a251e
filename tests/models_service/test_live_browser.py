"""Live mode in a real browser: both answers stream into the panes at once (static/js/live.js
reading two event streams), the judgment form appears, the dialogue continues; a second tab
on the same turn waits for the answers rather than having them generated again."""

from __future__ import annotations

import pytest

from annotation.models import Judgment, RoundStatus
from models_service.models import LiveTurn
from models_service.rounds import round_create
from models_service.services import model_version_create
from models_service.testing import Script, ScriptedServer
from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM, artifacts, browser, page, wait_until  # noqa: F401 - fixtures
from tests.models_service.conftest import TINY_SAMPLING, openai_config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]


def test_an_annotator_asks_both_models_judges_and_continues_the_dialogue(
    page, live_server, alice, project, live_server_up, artifacts
):
    project.live_mode = True
    project.save()
    old = model_version_create(
        name="hidden-old", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    new = model_version_create(
        name="hidden-new", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    round_create(project=project, baseline=old, candidate=new, status=RoundStatus.OPEN)

    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/live/{project.slug}/")
    page.fill("textarea[name=text]", "Write one line about the sea.")
    page.click("text=Ask both models")

    page.wait_for_selector("form.live-judge")  # shown once both streams said "done"
    for side in ("left", "right"):
        assert page.text_content(f'[data-pane="{side}"] [data-pane-state]').startswith("done")
    turn = LiveTurn.objects.get()
    left, right = (turn.sample_a, turn.sample_b) if turn.left == "A" else (turn.sample_b, turn.sample_a)

    def norm(text):  # carriage returns may be normalised away by the DOM
        return text.replace("\r", "")

    assert norm(page.text_content('[data-pane="left"] [data-pane-text]')) == norm(left.text)
    assert norm(page.text_content('[data-pane="right"] [data-pane-text]')) == norm(right.text)
    assert "hidden-" not in page.content()
    page.screenshot(path=str(artifacts / "live-turn.png"), full_page=True)

    page.check("input[name=choice][value=right]")
    page.check("input[name=strength][value=better]")
    page.click("text=Submit judgment")
    page.wait_for_selector("[data-live-after]")
    assert Judgment.objects.get().preferred == ("B" if turn.left == "A" else "A")

    page.fill("#next-message", "Shorter, please.")
    page.click("text=Send the next message")
    page.wait_for_selector("form.live-judge")
    second = LiveTurn.objects.latest("id")
    assert second.parent == turn and len(second.prompt.messages) == 3
    assert page.js_errors == []
    page.wait_for_load_state("networkidle")


def test_a_second_window_on_the_same_turn_waits_for_the_answers_instead_of_asking_again(
    page, live_server, alice, project
):
    answer = "One two three four five six seven eight nine ten."
    with ScriptedServer(Script(answer=answer, pieces=10, pause=0.3)) as server:
        project.live_mode = True
        project.save()
        old = model_version_create(name="hidden-old", backend="openai", config=openai_config(server))
        new = model_version_create(name="hidden-new", backend="openai", config=openai_config(server))
        round_create(project=project, baseline=old, candidate=new, status=RoundStatus.OPEN)

        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/live/{project.slug}/")
        page.fill("textarea[name=text]", "Count to ten.")
        page.click("text=Ask both models")
        page.wait_for_url("**/turns/**")
        wait_until(page, "document.querySelector('[data-pane=left] [data-pane-text]').textContent.length > 0")

        # The same turn in a second tab while both answers are still being written.
        second = page.context.new_page()
        errors: list[str] = []
        second.on("pageerror", lambda error: errors.append(str(error)))
        second.goto(page.url)
        wait_until(
            second,
            "document.querySelector('[data-pane=left] [data-pane-state]').textContent.includes('another window')",
        )
        page.wait_for_selector("form.live-judge")
        second.wait_for_selector("form.live-judge", timeout=20_000)  # it asked again and got the stored answers
        for tab in (page, second):
            for side in ("left", "right"):
                assert tab.text_content(f'[data-pane="{side}"] [data-pane-text]') == answer
        assert len(server.completions()) == 2  # one per answer, not one per tab
        assert page.js_errors == [] and errors == []
        second.close()
