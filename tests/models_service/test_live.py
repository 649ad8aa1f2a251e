"""Live mode: an annotator writes a prompt, both models of the open round answer at once
into the two panes (server-sent events from a real server), the pair is judged like any
other comparison, and the dialogue continues with the preferred answer."""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache
from django.core.signals import request_finished
from django.db import close_old_connections
from django.urls import reverse

from annotation.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    Judgment,
    Prompt,
    RoundStatus,
    Sample,
)
from models_service import live, views
from models_service.models import LiveTurn
from models_service.rounds import round_create
from models_service.services import model_version_create
from models_service.testing import Script, ScriptedServer
from tests.conftest import tags_of
from tests.models_service.conftest import TINY_SAMPLING, openai_config


@pytest.fixture
def live_project(project, live_server_up, django_capture_on_commit_callbacks):
    project.live_mode = True
    project.save()
    old = model_version_create(
        name="secret-old-7b", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    new = model_version_create(
        name="secret-new-7b", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    with django_capture_on_commit_callbacks(execute=True):
        round_ = round_create(project=project, baseline=old, candidate=new, status=RoundStatus.OPEN)
    round_.refresh_from_db()
    assert round_.status == RoundStatus.OPEN  # no prompts yet: sampling ended at once
    return project


def events_of(response) -> list[tuple[str, dict]]:
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            events.append((name, data))
    return events


def start_turn(client, project, text="Tell me about the sea.", parent=None) -> LiveTurn:
    data = {"text": text}
    if parent is not None:
        data["parent"] = parent.pk
    response = client.post(reverse("live", args=[project.slug]), data)
    assert response.status_code == 302, response.content.decode()[:500]
    return LiveTurn.objects.latest("id")


def stream_both(client, project, turn) -> dict[str, str]:
    texts = {}
    for side in ("left", "right"):
        events = events_of(client.get(reverse("live-stream", args=[project.slug, turn.pk, side])))
        assert events[-1][0] == "done", events
        texts[side] = "".join(d["text"] for name, d in events if name == "delta")
    return texts


def test_both_answers_stream_in_and_the_pair_is_judged_through_the_engine(client, alice, live_project):
    client.force_login(alice)
    page = client.get(reverse("live", args=[live_project.slug]))
    assert page.status_code == 200 and b"Ask both models" in page.content
    turn = start_turn(client, live_project)
    turn_page = client.get(reverse("live-turn", args=[live_project.slug, turn.pk]))
    html = turn_page.content.decode()
    assert turn_page.status_code == 200 and "Tell me about the sea." in html
    stream_urls = [attrs["data-stream-url"] for tag, attrs in tags_of(html) if "data-stream-url" in attrs]
    assert stream_urls == [reverse("live-stream", args=[live_project.slug, turn.pk, s]) for s in ("left", "right")]
    assert any(attrs.get("src", "").endswith("js/live.js") for tag, attrs in tags_of(html) if tag == "script")

    texts = stream_both(client, live_project, turn)
    turn.refresh_from_db()
    left_sample, right_sample = (turn.sample_a, turn.sample_b) if turn.left == "A" else (turn.sample_b, turn.sample_a)
    assert (texts["left"], texts["right"]) == (left_sample.text, right_sample.text)
    assert left_sample.completion_tokens <= 8 and left_sample.prompt.source == "live"

    judge = client.get(reverse("live-judge", args=[live_project.slug, turn.pk]))
    assert judge.status_code == 200 and b'name="choice"' in judge.content
    assignment = Assignment.objects.get(annotator=alice)
    assert assignment.left == turn.left and assignment.status == AssignmentStatus.ACTIVE
    comparison = assignment.comparison
    assert (comparison.taken, comparison.required_judgments, comparison.round_id) == (
        1,
        live_project.overlap,
        turn.round_id,
    )
    assert client.get(reverse("live-judge", args=[live_project.slug, turn.pk])).status_code == 200
    assert Assignment.objects.count() == 1  # asking again hands back the same assignment

    after = client.post(
        reverse("live-submit", args=[live_project.slug, turn.pk]), {"choice": "left", "strength": "better"}
    )
    assert after.status_code == 200 and b"Judgment saved" in after.content
    judgment = Judgment.objects.get()
    assert judgment.preferred == turn.left and judgment.left == turn.left and judgment.strength == "better"
    assert Comparison.objects.get().judgment_count == 1

    # Model names never reach the annotator's pages or streams.
    for content in (page.content, turn_page.content, judge.content, after.content):
        assert b"secret-" not in content and b"127.0.0.1:" not in content


def test_the_dialogue_continues_with_the_preferred_answer_as_a_new_comparison(client, alice, live_project):
    client.force_login(alice)
    first = start_turn(client, live_project, "Hello!")
    texts = stream_both(client, live_project, first)
    client.get(reverse("live-judge", args=[live_project.slug, first.pk]))
    client.post(reverse("live-submit", args=[live_project.slug, first.pk]), {"choice": "right", "strength": "slightly"})
    second = start_turn(client, live_project, "And then?", parent=first)
    assert second.parent == first
    assert second.prompt.messages == [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": texts["right"].strip()},
        {"role": "user", "content": "And then?"},
    ]
    assert second.prompt.turns == 2
    stream_both(client, live_project, second)
    client.get(reverse("live-judge", args=[live_project.slug, second.pk]))
    assert Comparison.objects.count() == 2 and Assignment.objects.filter(annotator=alice).count() == 2


def test_a_dialogue_without_a_preferred_answer_cannot_continue(client, alice, live_project):
    client.force_login(alice)
    turn = start_turn(client, live_project)
    stream_both(client, live_project, turn)
    client.get(reverse("live-judge", args=[live_project.slug, turn.pk]))
    after = client.post(reverse("live-submit", args=[live_project.slug, turn.pk]), {"choice": "tie"})
    assert b"dialogue ends here" in after.content
    response = client.post(reverse("live", args=[live_project.slug]), {"text": "more", "parent": turn.pk})
    assert response.status_code == 422 and b"cannot go on" in response.content


def test_a_stored_answer_is_replayed_not_generated_again(client, alice, live_project):
    client.force_login(alice)
    turn = start_turn(client, live_project)
    texts = stream_both(client, live_project, turn)
    again = stream_both(client, live_project, turn)
    assert again == texts and Sample.objects.count() == 2


def test_a_dead_server_shows_a_plain_error_and_keeps_the_details_for_leads(client, alice, live_project, openai_server):
    client.force_login(alice)
    turn = start_turn(client, live_project)
    openai_server.kill()
    try:
        events = events_of(client.get(reverse("live-stream", args=[live_project.slug, turn.pk, "left"])))
    finally:
        openai_server.start()
    assert events[-1][0] == "failed" and "could not be generated" in events[-1][1]["message"]
    assert "127.0.0.1" not in json.dumps(events)
    turn.refresh_from_db()
    assert "ConnectError" in (turn.error_a or turn.error_b)
    # The judgment form waits for both answers.
    judge = client.get(reverse("live-judge", args=[live_project.slug, turn.pk]))
    assert judge.status_code == 409 and not Assignment.objects.exists()
    # Once the server is back, trying again completes the turn.
    stream_both(client, live_project, turn)
    assert client.get(reverse("live-judge", args=[live_project.slug, turn.pk])).status_code == 200


def test_a_prompt_is_required_and_validated(client, alice, live_project):
    client.force_login(alice)
    response = client.post(reverse("live", args=[live_project.slug]), {"text": "   "})
    assert response.status_code == 422 and b"Write a prompt first" in response.content
    response = client.post(reverse("live", args=[live_project.slug]), {"text": "x" * 20_001})
    assert response.status_code == 422
    assert not Prompt.objects.exists()


def test_live_pages_are_for_annotators_of_projects_with_live_mode(client, alice, bob, lee, live_project):
    client.force_login(alice)
    turn = start_turn(client, live_project)
    client.force_login(bob)  # someone else's turn reads as missing
    assert client.get(reverse("live-turn", args=[live_project.slug, turn.pk])).status_code == 404
    assert client.get(reverse("live-stream", args=[live_project.slug, turn.pk, "left"])).status_code == 404
    client.force_login(lee)
    assert client.get(reverse("live", args=[live_project.slug])).status_code == 403
    live_project.live_mode = False
    live_project.save()
    client.force_login(alice)
    assert client.get(reverse("live", args=[live_project.slug])).status_code == 404


def test_without_an_open_generating_round_the_page_says_why(client, alice, project, versions):
    project.live_mode = True
    project.save()
    round_create(project=project, baseline=versions[0], candidate=versions[1], status=RoundStatus.OPEN)  # imported
    client.force_login(alice)
    page = client.get(reverse("live", args=[project.slug]))
    assert b"can answer live" in page.content
    response = client.post(reverse("live", args=[project.slug]), {"text": "Hi"})
    assert response.status_code == 422 and not LiveTurn.objects.exists()


def test_an_answer_naming_a_model_never_reaches_the_annotator_and_waits_for_a_lead(
    client, alice, live_project, monkeypatch
):
    from models_service import live, sampling
    from models_service.backends import Generation, StreamEvent

    live_project.identity_terms = ["Gemini"]
    live_project.save()
    original = live._live_adapter

    class SpeaksAsGemini:
        """The term arrives split across pieces, as a tokenizer would cut it."""

        def stream(self, request):
            for piece in ("Hello there. I am Gem", "ini, made", " by Google."):
                yield StreamEvent(delta=piece)
            yield StreamEvent(
                done=True, generation=Generation(text="Hello there. I am Gemini, made by Google.", finish_reason="stop")
            )

    monkeypatch.setattr(live, "_live_adapter", lambda v: SpeaksAsGemini() if v.name == "secret-old-7b" else original(v))
    client.force_login(alice)
    turn = start_turn(client, live_project)
    gemini_side = "A" if turn.version_a.name == "secret-old-7b" else "B"
    screen = {turn.left: "left", "B" if turn.left == "A" else "A": "right"}[gemini_side]
    other = "right" if screen == "left" else "left"

    for attempt in ("streamed", "replayed"):  # a reload must not show it either
        events = events_of(client.get(reverse("live-stream", args=[live_project.slug, turn.pk, screen])))
        shown = "".join(d.get("text", "") for name, d in events if name == "delta")
        assert events[-1][0] == "held", (attempt, events)
        assert "Gem" not in json.dumps(events) and "Google" not in json.dumps(events)
        assert "model" not in events[-1][1]["message"]  # it does not say why
        # Text before the term went out (the page clears it on "held"); the replay sends none.
        assert shown == ("Hello there. I" if attempt == "streamed" else "")
    assert events_of(client.get(reverse("live-stream", args=[live_project.slug, turn.pk, other])))[-1][0] == "done"

    judge = client.get(reverse("live-judge", args=[live_project.slug, turn.pk]))
    assert b"held back" in judge.content and b"Gemini" not in judge.content and not Comparison.objects.exists()
    flagged = Sample.objects.get(identity_flagged=True)
    assert sampling.sample_release(sample=flagged) == 1
    comparison = Comparison.objects.get()
    assert comparison.taken == 0  # into the pool, for whoever is handed it next


def test_an_annotator_is_told_when_the_hourly_limit_of_live_prompts_is_reached(client, alice, live_project, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.LIVE_TURNS_PER_HOUR = 2
    client.force_login(alice)
    first = start_turn(client, live_project, "One")
    start_turn(client, live_project, "Two")
    response = client.post(reverse("live", args=[live_project.slug]), {"text": "Three"})
    assert response.status_code == 422 and b"2 live answers in the last hour" in response.content
    assert b"Try again in 60 minutes" in response.content
    assert LiveTurn.objects.count() == 2
    LiveTurn.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    start_turn(client, live_project, "Three")  # an hour after the first, one more is fine
    settings.LIVE_TURNS_PER_HOUR = 0  # no limit
    start_turn(client, live_project, "Four")


# --- One generation per answer at a time -------------------------------------------------------


@pytest.fixture
def scripted_project(project, django_capture_on_commit_callbacks):
    """Live mode on a scripted server that counts the generations it is asked for."""
    with ScriptedServer(Script(answer="The sea is wide and grey today.", pieces=6)) as server:
        project.live_mode = True
        project.save()
        old = model_version_create(name="secret-old-7b", backend="openai", config=openai_config(server, max_retries=0))
        new = model_version_create(name="secret-new-7b", backend="openai", config=openai_config(server, max_retries=0))
        with django_capture_on_commit_callbacks(execute=True):
            round_create(project=project, baseline=old, candidate=new, status=RoundStatus.OPEN)
        yield project, server


def held(turn) -> bool:
    return any(cache.get(live._hold_key(turn, side)) for side in ("A", "B"))


def open_stream(client, project, turn, side="left"):
    return client.get(reverse("live-stream", args=[project.slug, turn.pk, side]))


def test_opening_a_stream_twenty_times_while_its_answer_is_generated_starts_one_generation(
    client, alice, scripted_project
):
    project, server = scripted_project
    client.force_login(alice)
    turn = start_turn(client, project)
    first = open_stream(client, project, turn)
    pieces = iter(first.streaming_content)
    assert next(pieces) == b": stream open\n\n"
    assert next(pieces).startswith(b"event: delta")  # generating: the model's answer is coming in
    assert len(server.completions()) == 1

    for _ in range(19):
        again = open_stream(client, project, turn)
        events = events_of(again)  # answered at once: one event, the stream ends
        assert [name for name, _ in events] == ["busy"]
    assert len(server.completions()) == 1  # nothing started, no thread waited

    rest = b"".join(pieces).decode()
    assert "event: done" in rest
    texts = stream_both(client, project, turn)  # now stored: replayed, and the other side generated once
    assert texts["left"] == "The sea is wide and grey today."
    assert len(server.completions()) == 2
    assert not held(turn)


def test_a_busy_stream_tells_the_browser_to_ask_again_shortly(client, alice, scripted_project):
    project, _ = scripted_project
    client.force_login(alice)
    turn = start_turn(client, project)
    for side in ("A", "B"):  # both answers being generated by other requests
        cache.add(live._hold_key(turn, side), "another", 60)
    body = b"".join(open_stream(client, project, turn).streaming_content).decode()
    assert body == (
        ": stream open\n\nretry: 2000\nevent: busy\n"
        'data: {"message": "This answer is being written in another window; it appears here when it is complete."}\n\n'
    )


def test_a_client_that_goes_away_mid_answer_lets_the_next_request_start_over(client, alice, scripted_project, rf):
    project, server = scripted_project
    client.force_login(alice)
    turn = start_turn(client, project)
    # The view called as a WSGI server would, which closes the response when the browser
    # goes away (the test client's own wrapper would reopen the way to closing the test's
    # database connection).
    request = rf.get(reverse("live-stream", args=[project.slug, turn.pk, "left"]))
    request.user = alice
    first = views.live_stream(request, project.slug, turn.pk, "left")
    pieces = iter(first.streaming_content)
    next(pieces), next(pieces)
    request_finished.disconnect(close_old_connections)
    try:
        first.close()
    finally:
        request_finished.connect(close_old_connections)
    turn.refresh_from_db()
    assert not held(turn) and turn.sample_a is None and turn.sample_b is None
    events = events_of(open_stream(client, project, turn))
    assert events[-1][0] == "done" and len(server.completions()) == 2


def test_a_hold_left_by_a_dead_process_lapses(client, alice, scripted_project, monkeypatch):
    project, server = scripted_project
    client.force_login(alice)
    turn = start_turn(client, project)
    monkeypatch.setattr(live, "LIVE_GENERATION_HOLD_SECONDS", 1)
    for side in ("A", "B"):  # taken by a process that died mid-answer
        assert live._hold_take(turn, side)
    assert events_of(open_stream(client, project, turn))[-1][0] == "busy"
    time.sleep(1.1)
    assert events_of(open_stream(client, project, turn))[-1][0] == "done"
    assert len(server.completions()) == 1


def test_a_failed_answer_tells_the_annotator_nothing_of_what_the_server_said(client, alice, scripted_project):
    project, server = scripted_project
    server.script = Script(status=500, body=b"Traceback: /srv/models/secret-old-7b/config.json INTERNAL")
    client.force_login(alice)
    turn = start_turn(client, project)
    events = events_of(open_stream(client, project, turn))
    assert events[-1][0] == "failed" and "INTERNAL" not in json.dumps(events)
    turn.refresh_from_db()
    error = turn.error_a or turn.error_b
    assert error.startswith("RequestFailed: HTTP 500 Internal Server Error from http://127.0.0.1:")
    assert "Traceback" not in error
    assert not held(turn)  # failed: free to try again


def test_a_generation_whose_hold_was_taken_over_stops_and_leaves_the_answer_to_the_other(
    client, alice, scripted_project, monkeypatch
):
    project, server = scripted_project
    server.script = Script(answer="Slowly, piece by piece, the answer comes.", pieces=6, pause=0.3)
    monkeypatch.setattr(live, "LIVE_GENERATION_HOLD_SECONDS", 2)  # renewed every half second
    client.force_login(alice)
    turn = start_turn(client, project)
    pieces = iter(open_stream(client, project, turn).streaming_content)
    next(pieces), next(pieces)
    side = turn.left  # the left pane shows this side's answer
    cache.set(live._hold_key(turn, side), "another request", 60)  # it lapsed and was taken
    time.sleep(0.6)
    rest = b"".join(pieces).decode()
    assert rest.endswith(
        'event: busy\ndata: {"message": "This answer is being written in another window; '
        'it appears here when it is complete."}\n\n'
    )
    turn.refresh_from_db()
    assert turn.sample_a is None and turn.sample_b is None
    assert cache.get(live._hold_key(turn, side)) == "another request"  # not released by the one that lost it
