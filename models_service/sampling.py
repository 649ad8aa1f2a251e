"""Sampling jobs: a round's arms answer its prompts on the ``gpu`` queue, the comparisons
built from their answers, and identity releases (docs/architecture.md, "Flows").

In short:

1. ``sampling_start`` turns a round into *arms* (``round_arms``): old vs new → the
   baseline and the candidate at one seed; temperatures → the candidate at two
   temperatures; seeds → the candidate at two seeds; arena → every version taking part,
   each answering only its share of the prompts (pairs rotate so that every pair of
   versions gets the same number of prompts, ±1). One ``SamplingJob`` per arm, queued
   on the ``gpu`` queue once the transaction commits.
2. ``sampling_job_run`` (the Celery task's body) claims its job with a conditional
   update, loads the model once, and answers the prompts that have no sample yet in
   fixed-size batches. Samples are unique per (prompt, version, seed), so a rerun or a
   re-delivered task never duplicates one. A prompt that fails is retried (within the
   run, up to ``SAMPLING_MAX_ATTEMPTS`` tries) and otherwise listed as a
   ``SamplingFailure`` with its error, until a later run answers it.
3. After every batch the round's comparisons are built for the prompts that now have
   both answers (``comparisons_build_sampled``); when the last job ends, a round that
   was ``sampling`` opens for annotation.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.utils import timezone
from pydantic import ValidationError as PydanticError

from annotation.models import Comparison, PairingStrategy, Project, Prompt, Round, RoundStatus, Sample
from annotation.services import open_rounds_forget
from core.tasks import QUEUE_UNREACHABLE, Heartbeat, heartbeat_every, task_queue
from core.text import identity_matcher, text_clean, text_hash
from models_service.arms import (
    Arm,
    RoundSampling,
    round_arms,
    round_pairs,
    round_prompt_ids,
    sample_usable,
)
from models_service.backends import Backend as BackendAdapter
from models_service.backends import (
    Generation,
    GenerationError,
    GenerationRequest,
    SamplingParams,
    backend_for,
    pydantic_errors,
)
from models_service.live import live_comparison_get_or_create
from models_service.models import JobStatus, LiveTurn, ModelVersion, SamplingFailure, SamplingJob

logger = logging.getLogger(__name__)

# Sent after each batch a sampling job stores: job, and the numbers of that batch.
batch_sampled = Signal()

# --- Starting sampling ---------------------------------------------------------------------


def _queue(job_ids: list[int]) -> list[int]:
    """Queue the jobs' tasks; returns those queued. With the broker unreachable the rest
    stay pending with a note that says why (their ``error`` until a worker claims them),
    the request that started them succeeds, and the sweeper
    (``tasks.requeue_abandoned_sampling``) queues them once the broker is back."""
    from models_service.tasks import sample_job

    queued: list[int] = []
    for job_id in job_ids:
        if not task_queue(sample_job, job_id):
            break  # one timeout is enough: the others would wait for it too
        queued.append(job_id)
    waiting = SamplingJob.objects.filter(status=JobStatus.PENDING)
    if queued:
        waiting.filter(pk__in=queued, error=QUEUE_UNREACHABLE).update(error="")
    if len(queued) < len(job_ids):
        waiting.filter(pk__in=job_ids[len(queued) :]).update(error=QUEUE_UNREACHABLE)
    return queued


def sampling_jobs_stale(*, limit: int) -> list[int]:
    """Running jobs whose heartbeat is older than ``SAMPLING_STALE_SECONDS``: their worker died."""
    stale_before = timezone.now() - timedelta(seconds=settings.SAMPLING_STALE_SECONDS)
    return list(
        SamplingJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def sampling_jobs_waiting(*, limit: int) -> list[int]:
    """Pending jobs no task will start: their queueing failed (the broker was down), or
    they were queued, with no sign of life since, longer than
    ``JOB_PENDING_REQUEUE_SECONDS`` ago (the message was lost)."""
    queued_before = timezone.now() - timedelta(seconds=settings.JOB_PENDING_REQUEUE_SECONDS)
    quiet = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=queued_before)
    return list(
        SamplingJob.objects.filter(Q(error=QUEUE_UNREACHABLE) | (Q(created_at__lt=queued_before) & quiet))
        .filter(status=JobStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


@transaction.atomic
def sampling_start(*, round_: Round) -> list[SamplingJob]:
    """Create the round's jobs (one per arm) if they are missing and queue every job that
    is not running: a first start, or a rerun that fills in what failed. Idempotent."""
    Round.objects.select_for_update().filter(pk=round_.pk).first()
    round_.refresh_from_db()
    if round_.status == RoundStatus.CLOSED:
        raise ValidationError("This round is closed; start a new round to sample again.")
    arms = round_arms(round_)
    if not arms:
        raise ValidationError("Rounds of imported pairs are not sampled.")
    existing = {job.arm: job for job in SamplingJob.objects.filter(round=round_)}
    stale_before = timezone.now() - timedelta(seconds=settings.SAMPLING_STALE_SECONDS)
    to_queue: list[int] = []
    jobs: list[SamplingJob] = []
    for arm in arms:
        job = existing.get(arm.key)
        if job is None:
            job = SamplingJob.objects.create(
                round=round_,
                arm=arm.key,
                model_version=arm.version,
                seed=arm.seed,
                params=arm.params.model_dump(exclude={"seed"}),
            )
        elif job.status == JobStatus.RUNNING and job.heartbeat_at and job.heartbeat_at >= stale_before:
            jobs.append(job)
            continue  # running now: it picks up everything missing by itself
        else:
            SamplingJob.objects.filter(pk=job.pk).update(status=JobStatus.PENDING, error="", finished_at=None)
            job.refresh_from_db()
        jobs.append(job)
        to_queue.append(job.pk)
    if round_.status == RoundStatus.DRAFT:
        Round.objects.filter(pk=round_.pk).update(status=RoundStatus.SAMPLING)
        round_.status = RoundStatus.SAMPLING
    if to_queue:
        transaction.on_commit(lambda: _queue(to_queue))
    return jobs


@transaction.atomic
def round_sampling_configure(
    *, round_: Round, sampling: dict[str, Any] | None = None, arena_version_ids: list[int] | None = None
) -> Round:
    """Set how a round is sampled, before its sampling starts."""
    if SamplingJob.objects.filter(round=round_).exists():
        raise ValidationError("Sampling of this round has started; its settings can no longer change.")
    if round_.status == RoundStatus.CLOSED:
        raise ValidationError("This round is closed.")
    if sampling is not None:
        try:
            RoundSampling.model_validate(sampling)
        except PydanticError as exc:
            raise ValidationError(
                {"sampling": [f"{k}: {'; '.join(v)}" for k, v in pydantic_errors(exc).items()]}
            ) from exc
        Round.objects.filter(pk=round_.pk).update(sampling=sampling)
        round_.sampling = sampling
    if arena_version_ids is not None:
        versions = list(ModelVersion.objects.filter(pk__in=arena_version_ids))
        missing = set(arena_version_ids) - {v.pk for v in versions}
        if missing:
            raise ValidationError(
                {"arena_versions": [f"No model version with id {', '.join(map(str, sorted(missing)))}."]}
            )
        round_.arena_versions.set(versions)
    round_arms(round_)  # the whole configuration must make sense now, not at sampling time
    return round_


# --- Running a job ---------------------------------------------------------------------------


def _sampled_prompt_ids(job: SamplingJob, project_id: int) -> set[int]:
    qs = Sample.objects.filter(model_version_id=job.model_version_id, prompt__project_id=project_id)
    if job.model_version.generates:
        qs = qs.filter(seed=job.seed)
    return set(qs.values_list("prompt_id", flat=True))


def _arm_of(job: SamplingJob, arms: list[Arm]) -> Arm | None:
    return next((a for a in arms if a.key == job.arm), None)


def _job_prompt_ids(round_: Round, arms: list[Arm], arm: Arm) -> list[int]:
    pairs = round_pairs(round_, arms, round_prompt_ids(round_))
    return [pid for pid, (x, y) in pairs.items() if arm.key in (x.key, y.key)]


def _claim(job_id: int, *, resume: bool = False) -> bool:
    """Take the job (conditional update: one taker). A queued job, or a running one whose
    worker stopped sending heartbeats; with ``resume`` (a retried task) also a job that
    stopped on an error."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SAMPLING_STALE_SECONDS)
    takeable = Q(status=JobStatus.PENDING) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
    if resume:
        takeable |= Q(status=JobStatus.FAILED)
    claimed = (
        SamplingJob.objects.filter(pk=job_id)
        .filter(takeable)
        .update(
            status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, finished_at=None, runs=F("runs") + 1, error=""
        )
    )
    return claimed == 1


def _record_failures(job: SamplingJob, errors: dict[int, GenerationError]) -> None:
    if not errors:
        return
    existing = {f.prompt_id: f for f in SamplingFailure.objects.filter(job=job, prompt_id__in=list(errors))}
    now = timezone.now()
    new: list[SamplingFailure] = []
    for prompt_id, error in errors.items():
        failure = existing.get(prompt_id)
        if failure is None:
            new.append(
                SamplingFailure(job=job, prompt_id=prompt_id, error=error.message[:4000], retryable=error.retryable)
            )
        else:
            SamplingFailure.objects.filter(pk=failure.pk).update(
                error=error.message[:4000], retryable=error.retryable, attempts=F("attempts") + 1, last_failed_at=now
            )
    SamplingFailure.objects.bulk_create(new, ignore_conflicts=True)


def _store_samples(job: SamplingJob, project: Project, results: dict[int, Generation]) -> dict[int, GenerationError]:
    """Insert the answers (a conflict means another run stored it first: fine). Returns the
    prompts whose answer could not be stored, with the reason."""
    if not results:
        return {}
    matcher = identity_matcher(project.identity_terms)
    params = SamplingParams.model_validate({**job.params, "seed": job.seed}).request_fields()
    rows = []
    for prompt_id, generation in results.items():
        text = text_clean(generation.text)
        rows.append(
            Sample(
                prompt_id=prompt_id,
                model_version_id=job.model_version_id,
                text=text,
                text_hash=text_hash(text),
                sampling_params=params,
                seed=job.seed,
                prompt_tokens=generation.prompt_tokens,
                completion_tokens=generation.completion_tokens,
                latency_ms=generation.latency_ms,
                finish_reason=generation.finish_reason[:40],
                identity_flagged=matcher.matches(text),
            )
        )
    with transaction.atomic():
        Sample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    stored = set(
        Sample.objects.filter(
            model_version_id=job.model_version_id, seed=job.seed, prompt_id__in=list(results)
        ).values_list("prompt_id", flat=True)
    )
    refused: dict[int, GenerationError] = {}
    for row in rows:
        if row.prompt_id in stored:
            continue
        # (prompt, version, text) is unique too: this version already gave the very same
        # answer to this prompt under another seed. Two equal texts make no pair.
        twin = (
            Sample.objects.filter(
                prompt_id=row.prompt_id, model_version_id=job.model_version_id, text_hash=row.text_hash
            )
            .values_list("seed", flat=True)
            .first()
        )
        refused[row.prompt_id] = GenerationError(
            f"the answer is identical to this version's earlier answer to the same prompt (seed {twin}); "
            "an identical pair cannot be compared — change the round's seed or temperature",
            retryable=False,
        )
    return refused


def _job_counters(job: SamplingJob, total: int, sampled: int) -> None:
    failed = SamplingFailure.objects.filter(job=job).count()
    SamplingJob.objects.filter(pk=job.pk).update(
        total=total, sampled=min(sampled, total), failed=failed, heartbeat_at=timezone.now()
    )


def sampling_job_run(*, job_id: int, resume: bool = False) -> SamplingJob | None:
    """Answer every prompt of a job that has no sample yet. Returns None when the job is
    not to be taken: done, or held by a live worker (a duplicate delivery).

    An unexpected error (the database going away, a time limit) marks the job failed
    with the reason and propagates, for the task to retry with ``resume``."""
    if not _claim(job_id, resume=resume):
        return None
    job = SamplingJob.objects.select_related(
        "round__project", "round__baseline", "round__candidate", "model_version"
    ).get(pk=job_id)
    round_ = job.round
    project = round_.project
    adapter: BackendAdapter | None = None
    stopped = ""
    # Beats while the model loads and between batches too: only a dead worker's job goes stale.
    heartbeat = Heartbeat(
        lambda: bool(
            SamplingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, runs=job.runs).update(
                heartbeat_at=timezone.now()
            )
        ),
        every=heartbeat_every(settings.SAMPLING_STALE_SECONDS),
        name=f"sampling job {job_id}",
    ).start()
    try:
        arms = round_arms(round_)
        arm = _arm_of(job, arms)
        prompt_ids = _job_prompt_ids(round_, arms, arm) if arm else []
        done = _sampled_prompt_ids(job, project.pk)
        missing = [pid for pid in prompt_ids if pid not in done]
        total, sampled = len(prompt_ids), len(prompt_ids) - len(missing)
        # Prompts answered meanwhile (an import, another run) are no longer failures.
        SamplingFailure.objects.filter(job=job).exclude(prompt_id__in=missing).delete()
        _job_counters(job, total, sampled)
        if missing:
            try:
                adapter = backend_for(job.model_version)
            except Exception as exc:
                message = f"the {job.model_version.backend} backend could not start: {type(exc).__name__}: {exc}"[:4000]
                _record_failures(job, {pid: GenerationError(message, retryable=True) for pid in missing})
                _job_counters(job, total, sampled)
                SamplingJob.objects.filter(pk=job.pk).update(error=message)
                logger.warning("sampling job %s: %s", job.pk, message)
            else:
                sampled += _run_batches(job, project, adapter, missing, total, sampled)
        _job_counters(job, total, sampled)
    except BaseException as exc:
        stopped = f"the job stopped: {type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        heartbeat.stop()
        if adapter is not None:
            try:
                adapter.close()
            except Exception:
                logger.exception("sampling job %s: closing the backend failed", job_id)
        try:
            failed = SamplingFailure.objects.filter(job_id=job_id).exists()
            finish: dict[str, Any] = {
                "status": JobStatus.FAILED if (failed or stopped) else JobStatus.DONE,
                "finished_at": timezone.now(),
            }
            if stopped:
                finish["error"] = stopped
            SamplingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(**finish)
        except DatabaseError:
            # The database is what failed: the stale heartbeat lets a later delivery take over.
            logger.exception("sampling job %s: could not record how it ended", job_id)
    round_sampling_settle(round_=round_)
    job.refresh_from_db()
    return job


def _run_batches(
    job: SamplingJob, project: Project, adapter: BackendAdapter, missing: list[int], total: int, sampled: int
) -> int:
    """The batch loop. Failed prompts go to the back of the queue until they have had
    SAMPLING_MAX_ATTEMPTS tries in this run. Returns how many prompts were answered."""
    # vLLM schedules big batches itself (continuous batching): hand it its own size.
    batch_size = getattr(adapter, "preferred_batch_size", None) or settings.SAMPLING_BATCH_SIZE
    max_attempts = settings.SAMPLING_MAX_ATTEMPTS
    params = SamplingParams.model_validate({**job.params, "seed": job.seed})
    queue: list[int] = list(missing)
    tries: dict[int, int] = {}
    answered = 0
    while queue:
        if Round.objects.filter(pk=job.round_id, status=RoundStatus.CLOSED).exists():
            # A lead closed the round: stop spending GPU time on it, and say what is left.
            closed = GenerationError("not sampled: the round was closed while sampling ran", retryable=False)
            _record_failures(job, dict.fromkeys(dict.fromkeys(queue), closed))
            break
        batch, queue = queue[:batch_size], queue[batch_size:]
        messages = dict(Prompt.objects.filter(pk__in=batch).values_list("id", "messages"))
        batch = [pid for pid in batch if pid in messages]  # a prompt deleted meanwhile
        results = list(adapter.generate([GenerationRequest(messages=messages[pid], params=params) for pid in batch]))
        if len(results) != len(batch):  # a backend bug must not make prompts vanish
            results = (results + [GenerationError("the backend returned no answer for this prompt")] * len(batch))[
                : len(batch)
            ]
        good: dict[int, Generation] = {}
        bad: dict[int, GenerationError] = {}
        for pid, result in zip(batch, results, strict=True):
            if isinstance(result, Generation):
                good[pid] = result
            else:
                bad[pid] = result
        bad.update(_store_samples(job, project, good))
        stored = [pid for pid in good if pid not in bad]
        SamplingFailure.objects.filter(job=job, prompt_id__in=stored).delete()
        _record_failures(job, bad)
        for pid, error in bad.items():
            tries[pid] = tries.get(pid, 0) + 1
            if error.retryable and tries[pid] < max_attempts:
                queue.append(pid)
        answered += len(stored)
        _job_counters(job, total, sampled + answered)
        if stored:
            comparisons_build_sampled(round_=job.round, prompt_ids=stored)
        batch_sampled.send(sender=SamplingJob, job=job, stored=len(stored), failed=len(bad))
    return answered


def round_sampling_settle(*, round_: Round) -> None:
    """When no job of the round is queued or running: build what can be built, and open
    a round that was waiting for its samples."""
    if SamplingJob.objects.filter(round=round_, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists():
        return
    comparisons_build_sampled(round_=round_)
    with transaction.atomic():
        opened = Round.objects.filter(pk=round_.pk, status=RoundStatus.SAMPLING).update(
            status=RoundStatus.OPEN, opened_at=timezone.now()
        )
        if opened:
            open_rounds_forget(round_.project_id)


# --- Comparisons ------------------------------------------------------------------------------


def _usable_samples(arm: Arm, prompt_ids: list[int]) -> dict[int, int]:
    """prompt → the arm's sample that may be shown (not flagged, or released by a lead)."""
    qs = Sample.objects.filter(model_version=arm.version, prompt_id__in=prompt_ids).filter(
        Q(identity_flagged=False) | Q(identity_released=True)
    )
    if arm.generates:
        qs = qs.filter(seed=arm.seed)
    chosen: dict[int, int] = {}
    for sample_id, prompt_id in qs.order_by("id").values_list("id", "prompt_id"):
        chosen.setdefault(prompt_id, sample_id)
    return chosen


@transaction.atomic
def comparisons_build_sampled(*, round_: Round, prompt_ids: list[int] | None = None) -> int:
    """Create the comparison of every prompt (of ``prompt_ids``, default all) whose two
    arms both have a usable answer. A is the first arm (the baseline in old-vs-new
    rounds); sides are randomised per assignment. Idempotent; returns how many were made."""
    # One builder per round at a time: two jobs finishing together must not both create
    # the comparison of the same prompt.
    Round.objects.select_for_update().filter(pk=round_.pk).first()
    arms = round_arms(round_)
    if prompt_ids is not None and round_.pairing != PairingStrategy.ARENA:
        pairs = round_pairs(round_, arms, round_prompt_ids(round_, only=prompt_ids))
    else:
        # Arena pairs rotate over the whole prompt list: a prompt's pair depends on its place.
        pairs = round_pairs(round_, arms, round_prompt_ids(round_))
        if prompt_ids is not None:
            wanted = set(prompt_ids)
            pairs = {pid: pair for pid, pair in pairs.items() if pid in wanted}
    if not pairs:
        return 0
    already = set(
        Comparison.objects.filter(round=round_, prompt_id__in=list(pairs)).values_list("prompt_id", flat=True)
    )
    todo = [pid for pid in pairs if pid not in already]
    if not todo:
        return 0
    usable = {arm.key: _usable_samples(arm, todo) for arm in arms}
    overlap = round_.project.overlap
    new = []
    for pid in todo:
        first, second = pairs[pid]
        a, b = usable[first.key].get(pid), usable[second.key].get(pid)
        if a and b and a != b:
            new.append(
                Comparison(round=round_, prompt_id=pid, sample_a_id=a, sample_b_id=b, required_judgments=overlap)
            )
    Comparison.objects.bulk_create(new, batch_size=1000)
    return len(new)


# --- Identity leaks ---------------------------------------------------------------------------


@transaction.atomic
def sample_release(*, sample: Sample) -> int:
    """A lead lets a flagged sample into annotation. Builds the comparisons it was holding
    back (sampled rounds, live turns). Returns how many comparisons that created."""
    if not sample.identity_flagged:
        raise ValidationError("This sample is not flagged; there is nothing to release.")
    Sample.objects.filter(pk=sample.pk).update(identity_released=True)
    sample.identity_released = True
    # Pairs already made with it (imports) are handed out once both answers may be.
    holding = Comparison.objects.filter(Q(sample_a=sample) | Q(sample_b=sample), held=True)
    unreleased = Sample.objects.filter(identity_flagged=True, identity_released=False).values("id")
    holding.exclude(Q(sample_a__in=unreleased) | Q(sample_b__in=unreleased)).update(held=False)
    created = 0
    rounds = Round.objects.filter(
        project_id=sample.prompt.project_id, sampling_jobs__model_version=sample.model_version_id
    )
    for round_ in rounds.exclude(status=RoundStatus.CLOSED).distinct():
        created += comparisons_build_sampled(round_=round_, prompt_ids=[sample.prompt_id])
    turns = LiveTurn.objects.filter(Q(sample_a=sample) | Q(sample_b=sample), comparison__isnull=True).select_related(
        "sample_a", "sample_b", "round__project"
    )
    for turn in turns:
        if turn.round.status == RoundStatus.CLOSED or not (turn.sample_a and turn.sample_b):
            continue
        if not all(sample_usable(s) for s in (turn.sample_a, turn.sample_b)):
            continue
        comparison, made = live_comparison_get_or_create(turn)
        LiveTurn.objects.filter(pk=turn.pk).update(comparison=comparison)
        created += int(made)
    return created
