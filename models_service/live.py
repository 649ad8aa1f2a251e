"""Live mode: an annotator writes a prompt, both models of the open round answer at once
(streamed into the page), and the pair is judged like any other; the dialogue may go on
with the preferred (or edited) answer.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.assignment import assignment_grant
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    Judgment,
    PairingStrategy,
    Preference,
    Project,
    Prompt,
    Round,
    RoundStatus,
    Sample,
    Side,
)
from core.text import identity_matcher, messages_hash, messages_normalize, messages_turns, text_clean, text_hash
from models_service.arms import LIVE_SOURCE, round_arms, sample_usable
from models_service.backends import Backend as BackendAdapter
from models_service.backends import Generation, GenerationRequest, SamplingParams, StreamEvent, backend_for
from models_service.models import Backend, LiveTurn, ModelVersion
from models_service.outbound import host_policy


class LiveUnavailable(ValidationError):
    """Live mode cannot run for this project now; the message says why, for the annotator."""


MAX_LIVE_PROMPT_CHARS = 20_000


def live_round(project: Project) -> Round:
    """The open round whose models answer live prompts: the newest one with two
    generating arms that can stream."""
    if not project.live_mode:
        raise LiveUnavailable("Live prompts are not switched on for this project.")
    for round_ in (
        Round.objects.filter(project=project, status=RoundStatus.OPEN)
        .select_related("baseline", "candidate")
        .order_by("-number")
    ):
        try:
            arms = round_arms(round_)
        except ValidationError:
            continue
        if len(arms) >= 2 and all(a.version.backend in (Backend.OPENAI, Backend.TRANSFORMERS) for a in arms):
            return round_
    raise LiveUnavailable(
        "No open round of this project has two model versions that can answer live "
        "(openai or transformers backends). Ask your project lead."
    )


def live_continuation(turn: LiveTurn) -> str | None:
    """The assistant message that continues the dialogue after ``turn``: the annotator's
    edit if they made one, else the preferred answer; None when nothing was preferred."""
    if turn.assignment_id is None:
        return None
    judgment = Judgment.objects.filter(assignment_id=turn.assignment_id).select_related("edit").first()
    if judgment is None:
        return None
    edit = getattr(judgment, "edit", None)
    if edit is not None:
        return edit.text
    if judgment.preferred == Preference.A and turn.sample_a_id:
        return Sample.objects.get(pk=turn.sample_a_id).text
    if judgment.preferred == Preference.B and turn.sample_b_id:
        return Sample.objects.get(pk=turn.sample_b_id).text
    return None


@transaction.atomic
def _live_rate_check(annotator: Any) -> None:
    """Each live turn costs two generations on the GPUs: an annotator may start at most
    ``LIVE_TURNS_PER_HOUR`` of them in any hour (0: no limit)."""
    limit = settings.LIVE_TURNS_PER_HOUR
    if not limit:
        return
    since = timezone.now() - timedelta(hours=1)
    recent = LiveTurn.objects.filter(annotator=annotator, created_at__gte=since).order_by("created_at")
    if recent.count() < limit:
        return
    oldest = recent.values_list("created_at", flat=True)[recent.count() - limit]
    minutes = max(1, int((oldest + timedelta(hours=1) - timezone.now()).total_seconds() // 60) + 1)
    raise ValidationError(
        {
            "text": f"You have asked for {limit} live answers in the last hour, the most allowed. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, or judge the pairs of the open round meanwhile."
        }
    )


def live_turn_start(*, project: Project, annotator: Any, text: str, parent: LiveTurn | None = None) -> LiveTurn:
    """Store the annotator's prompt (after the dialogue so far) and set up both answers."""
    round_ = live_round(project)
    text = (text or "").replace("\r\n", "\n").strip()
    if not text:
        raise ValidationError({"text": "Write a prompt first."})
    _live_rate_check(annotator)
    if len(text) > MAX_LIVE_PROMPT_CHARS:
        raise ValidationError({"text": f"Keep the prompt under {MAX_LIVE_PROMPT_CHARS:,} characters."})
    history: list[dict[str, str]] = []
    if parent is not None:
        if parent.annotator_id != getattr(annotator, "pk", None) or parent.project_id != project.pk:
            raise ValidationError({"parent": "That dialogue is not yours."})
        reply = live_continuation(parent)
        if reply is None:
            raise ValidationError(
                {"parent": "This dialogue cannot go on: no answer was preferred (or edited). Start a new prompt."}
            )
        if not reply.strip():
            raise ValidationError(
                {"parent": "The answer you preferred is empty, so the dialogue cannot go on. Start a new prompt."}
            )
        history = list(parent.prompt.messages) + [{"role": "assistant", "content": reply}]
    try:
        messages = messages_normalize(history + [{"role": "user", "content": text}])
    except ValueError as exc:
        raise ValidationError({"text": str(exc)}) from exc
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        content_hash=messages_hash(messages),
        defaults={"messages": messages, "tags": ["live"], "source": LIVE_SOURCE, "turns": messages_turns(messages)},
    )
    arms = round_arms(round_)
    if round_.pairing == PairingStrategy.ARENA:
        arms = random.sample(arms, 2)
    first, second = arms[0], arms[1]
    seed = secrets.randbelow(2**31)
    return LiveTurn.objects.create(
        project=project,
        round=round_,
        annotator=annotator,
        parent=parent,
        prompt=prompt,
        version_a=first.version,
        version_b=second.version,
        params_a=first.params.model_dump(exclude={"seed"}),
        params_b=second.params.model_dump(exclude={"seed"}),
        seed_a=seed,
        seed_b=seed + 1,  # same-version strategies need two seeds (unique per prompt, version, seed)
        left=Side.A if secrets.randbelow(2) == 0 else Side.B,
    )


_live_adapters: dict[tuple[int, str], BackendAdapter] = {}
_live_adapters_lock = threading.Lock()


def _live_adapter(version: ModelVersion) -> BackendAdapter:
    """Adapters for live mode stay loaded in the web process (a local model takes seconds
    to load; an HTTP client keeps its connections)."""
    # The outbound policy is part of the key: an adapter is built for the policy it checks.
    key = (version.pk, version.backend + json.dumps(version.config, sort_keys=True) + repr(host_policy()))
    with _live_adapters_lock:
        adapter = _live_adapters.get(key)
        if adapter is None:
            for old in [k for k in _live_adapters if k[0] == version.pk]:
                _live_adapters.pop(old).close()
            adapter = backend_for(version)
            _live_adapters[key] = adapter
        return adapter


# How long a generation holds its side of a turn without a sign of life. It renews the
# hold as its pieces arrive (every quarter of this) and lets go when it ends; a web process
# that died mid-answer blocks the side for at most this long.
LIVE_GENERATION_HOLD_SECONDS = 120


def _hold_key(turn: LiveTurn, side: str) -> str:
    return f"live:generating:{turn.pk}:{side}"


def _hold_take(turn: LiveTurn, side: str) -> str | None:
    """Take the side for one generation; a token for renewing and releasing it, or None
    when another generation holds it. A lock in the cache (Redis in production: shared
    by every web process), as the dashboards' refresh lock (insights/cache.py): a stream
    starting is no reason to write to the database, and the hold is worth nothing once
    its generation is gone."""
    token = secrets.token_hex(8)
    return token if cache.add(_hold_key(turn, side), token, LIVE_GENERATION_HOLD_SECONDS) else None


def _hold_renew(turn: LiveTurn, side: str, token: str) -> bool:
    """Extend our hold; False only when another generation holds the side now (ours
    lapsed and was taken). A hold that is simply gone (lapsed, or a cache that does not
    answer) is taken again: stopping a generation that nobody else does would help no one."""
    key = _hold_key(turn, side)
    current = cache.get(key)
    if current is None:
        cache.add(key, token, LIVE_GENERATION_HOLD_SECONDS)
        return True
    if current != token:
        return False
    cache.touch(key, LIVE_GENERATION_HOLD_SECONDS)
    return True


def _hold_release(turn: LiveTurn, side: str, token: str) -> None:
    key = _hold_key(turn, side)
    if cache.get(key) == token:
        cache.delete(key)


def _stored_answer(turn: LiveTurn, side: str) -> Sample | None:
    """The side's answer as stored now (another request may have stored it meanwhile)."""
    field = "sample_a_id" if side == Side.A else "sample_b_id"
    sample_id = LiveTurn.objects.filter(pk=turn.pk).values_list(field, flat=True).first()
    return Sample.objects.filter(pk=sample_id).first() if sample_id else None


def _replay(sample: Sample) -> Iterator[StreamEvent]:
    if not sample_usable(sample):
        yield StreamEvent(done=True, generation=Generation(text="", finish_reason=""), extra={"held": True})
        return
    yield StreamEvent(delta=sample.text)
    yield StreamEvent(done=True, generation=Generation(text=sample.text, finish_reason=sample.finish_reason))


def _busy() -> StreamEvent:
    return StreamEvent(done=True, extra={"busy": True})


def live_stream(*, turn: LiveTurn, side: str) -> Iterator[StreamEvent]:
    """Stream one answer of a live turn (``side`` in sample terms, A or B) and store it
    when complete. An answer already stored is replayed at once (a reload, a retry).

    One generation per side at a time: opening the stream again while the answer is being
    generated (a second tab, a reload, a script) starts nothing and gets one final event
    with ``busy`` at once, holding no web thread; asked again later, it gets the stored
    answer. The hold is a lock in the cache, renewed as the answer arrives
    (``LIVE_GENERATION_HOLD_SECONDS``).

    Blind protocol: an answer that names a model or its maker (the project's identity
    terms) must not reach the annotator. The stream holds back the last characters (as
    many as the longest term) until the text after them is known, and stops showing the
    answer as soon as a term matches; the answer is still generated and stored, flagged,
    for a lead to review, and the final event carries ``held``. A held answer is never
    replayed."""
    stored = _stored_answer(turn, side)
    if stored is not None:
        yield from _replay(stored)
        return
    hold = _hold_take(turn, side)
    if hold is None:
        yield _busy()
        return
    try:
        stored = _stored_answer(turn, side)  # finished between the first look and the hold
        if stored is not None:
            yield from _replay(stored)
            return
        yield from _generate(turn, side, hold)
    finally:
        # Also when the client goes away mid-answer (the generator is closed): the next
        # request may then start over.
        _hold_release(turn, side, hold)


def _generate(turn: LiveTurn, side: str, hold: str) -> Iterator[StreamEvent]:
    version = turn.version_a if side == Side.A else turn.version_b
    seed = turn.seed_a if side == Side.A else turn.seed_b
    params = SamplingParams.model_validate({**(turn.params_a if side == Side.A else turn.params_b), "seed": seed})
    matcher = identity_matcher(turn.project.identity_terms)
    # A name still being written lies within the last characters; hold back as many as the
    # longest mention can take (its word boundary included).
    hold_back = matcher.longest
    text, sent, held = "", 0, False
    renew_at = timezone.now() + timedelta(seconds=LIVE_GENERATION_HOLD_SECONDS / 4)
    events: Iterator[StreamEvent] | None = None
    try:
        adapter = _live_adapter(version)
        final: Generation | None = None
        events = adapter.stream(GenerationRequest(messages=turn.prompt.messages, params=params))
        for event in events:
            if timezone.now() >= renew_at:
                if not _hold_renew(turn, side, hold):  # lapsed and taken by another request: that one answers
                    yield _busy()
                    return
                renew_at = timezone.now() + timedelta(seconds=LIVE_GENERATION_HOLD_SECONDS / 4)
            if event.done:
                final = event.generation
                continue
            # What the page shows must be what is stored (PostgreSQL text holds no NUL).
            text += text_clean(event.delta)
            if held:
                continue
            if matcher.matches(text):
                held = True
                continue
            safe = max(sent, len(text) - hold_back)
            if safe > sent:
                yield StreamEvent(delta=text[sent:safe])
                sent = safe
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"[:1000]
        field = "error_a" if side == Side.A else "error_b"
        LiveTurn.objects.filter(pk=turn.pk).update(**{field: message})
        raise LiveStreamFailed(message) from exc
    finally:
        # Stop the model's stream now, not when the garbage collector gets to it: a client
        # that went away or a lost hold must not keep the server generating.
        close = getattr(events, "close", None)
        if close is not None:
            close()
    assert final is not None
    sample = live_sample_store(turn=turn, side=side, generation=final)
    if held or not sample_usable(sample):
        yield StreamEvent(done=True, generation=final, extra={"sample_id": sample.pk, "held": True})
        return
    if sample.text[sent:]:
        yield StreamEvent(delta=sample.text[sent:])
    yield StreamEvent(done=True, generation=final, extra={"sample_id": sample.pk})


class LiveStreamFailed(Exception):
    pass


@transaction.atomic
def live_sample_store(*, turn: LiveTurn, side: str, generation: Generation) -> Sample:
    version = turn.version_a if side == Side.A else turn.version_b
    seed = turn.seed_a if side == Side.A else turn.seed_b
    params = SamplingParams.model_validate(
        {**(turn.params_a if side == Side.A else turn.params_b), "seed": seed}
    ).request_fields()
    text = text_clean(generation.text)
    digest = text_hash(text)
    matcher = identity_matcher(turn.project.identity_terms)
    sample = (
        Sample.objects.filter(prompt=turn.prompt, model_version=version)
        .filter(Q(seed=seed) | Q(text_hash=digest))
        .order_by("id")
        .first()
    )
    if sample is None:
        try:
            with transaction.atomic():
                sample = Sample.objects.create(
                    prompt=turn.prompt,
                    model_version=version,
                    text=text,
                    text_hash=digest,
                    sampling_params=params,
                    seed=seed,
                    prompt_tokens=generation.prompt_tokens,
                    completion_tokens=generation.completion_tokens,
                    latency_ms=generation.latency_ms,
                    finish_reason=generation.finish_reason[:40],
                    identity_flagged=matcher.matches(text),
                )
        except IntegrityError:  # stored by a concurrent request for the same answer
            sample = (
                Sample.objects.filter(prompt=turn.prompt, model_version=version)
                .filter(Q(seed=seed) | Q(text_hash=digest))
                .order_by("id")
                .first()
            )
            assert sample is not None
    field = "sample_a" if side == Side.A else "sample_b"
    LiveTurn.objects.filter(pk=turn.pk).update(**{field: sample, f"error_{side.lower()}": ""})
    setattr(turn, field, sample)
    return sample


@dataclass(frozen=True)
class LiveJudging:
    """What the live page shows once both answers are in."""

    assignment: Assignment | None
    reason: str = ""
    # Why there is no assignment: waiting (an answer is missing), closed, flagged, same,
    # taken (judged by others already), judged (by this annotator already).
    code: str = ""


def live_comparison_get_or_create(turn: LiveTurn) -> tuple[Comparison, bool]:
    """The comparison of the turn's two stored answers (created when missing)."""
    if turn.sample_a_id is None or turn.sample_b_id is None:
        raise ValueError("a live turn makes a comparison once both of its answers are stored")
    comparison = Comparison.objects.filter(
        round=turn.round, sample_a_id=turn.sample_a_id, sample_b_id=turn.sample_b_id
    ).first()
    if comparison is not None:
        return comparison, False
    comparison = Comparison.objects.create(
        round=turn.round,
        prompt=turn.prompt,
        sample_a_id=turn.sample_a_id,
        sample_b_id=turn.sample_b_id,
        required_judgments=turn.project.overlap,
    )
    return comparison, True


@transaction.atomic
def live_assignment_create(*, turn: LiveTurn) -> LiveJudging:
    """Turn a live turn's two answers into a comparison handed to its author through the
    assignment engine (``annotation.assignment.assignment_grant``): a slot taken and leased,
    with the left side the answers were already streamed into.

    The comparison needs the project's k judgments like any other; the author takes the
    first slot, the pool hands out the rest."""
    turn = (
        LiveTurn.objects.select_for_update(of=("self",))
        .select_related("sample_a", "sample_b", "round", "project")
        .get(pk=turn.pk)
    )
    if turn.assignment_id:
        return LiveJudging(Assignment.objects.get(pk=turn.assignment_id))
    if not (turn.sample_a and turn.sample_b):
        return LiveJudging(None, "Both answers must finish first.", "waiting")
    if turn.round.status == RoundStatus.CLOSED:
        return LiveJudging(None, "The round these answers belong to was closed meanwhile.", "closed")
    if not (sample_usable(turn.sample_a) and sample_usable(turn.sample_b)):
        return LiveJudging(
            None,
            "An answer was held back for a lead to review, so this turn is kept out of the data. Start a new prompt.",
            "flagged",
        )
    if turn.sample_a_id == turn.sample_b_id:
        return LiveJudging(
            None, "Both answers are the same text; there is nothing to compare. Start a new prompt.", "same"
        )
    comparison, _ = live_comparison_get_or_create(turn)
    assignment = Assignment.objects.filter(comparison=comparison, annotator=turn.annotator).first()
    if assignment is None:
        assignment = assignment_grant(comparison=comparison, annotator=turn.annotator, left=turn.left)
        if assignment is None:
            return LiveJudging(None, "These two answers were already judged by others. Start a new prompt.", "taken")
    elif assignment.status != AssignmentStatus.ACTIVE or assignment.left != turn.left:
        # Judged already, or held from another turn that showed the answers the other way round.
        LiveTurn.objects.filter(pk=turn.pk).update(comparison=comparison)
        return LiveJudging(None, "You already judged these two answers. Start a new prompt.", "judged")
    LiveTurn.objects.filter(pk=turn.pk).update(comparison=comparison, assignment=assignment)
    return LiveJudging(assignment)


@transaction.atomic
def project_live_mode_set(*, project: Project, enabled: bool) -> Project:
    """Switch live prompts on or off for a project (leads)."""
    project.live_mode = bool(enabled)
    project.save(update_fields=["live_mode"])  # save(): the project cache drops its entry
    return project
