"""Writes of the models service (STYLE.md §2): sampling jobs, samples, the comparisons
built from them, identity releases, and live-mode turns.

Sampling, in short (ARCHITECTURE.md §Flows 1):

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

import hashlib
import itertools
import json
import logging
import random
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

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
from models_service.backends import (
    Backend as BackendAdapter,
)
from models_service.backends import (
    Generation,
    GenerationError,
    GenerationRequest,
    SamplingParams,
    StreamEvent,
    backend_for,
    pydantic_errors,
    sampling_params_for,
)
from models_service.models import (
    Backend,
    JobStatus,
    LiveTurn,
    ModelVersion,
    SamplingFailure,
    SamplingJob,
)

logger = logging.getLogger(__name__)

# Sent after each batch a sampling job stores: job, and the numbers of that batch.
batch_sampled = Signal()

LIVE_SOURCE = "live"


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


# --- Text checks -------------------------------------------------------------------------


def identity_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """The importer's rule (annotation/imports.py): listed names as case-sensitive whole
    words, so "Llama" is caught and Spanish "llama" is not."""
    cleaned = [t.strip() for t in terms if t and t.strip()]
    if not cleaned:
        return None
    return re.compile(r"\b(" + "|".join(re.escape(t) for t in cleaned) + r")\b")


def sample_text_clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a model can emit one (random or broken weights).
    return text.replace("\x00", "")


# --- Round sampling settings and arms --------------------------------------------------


# Seeds a lead chooses lie below this; seeds derived for non-default parameters (``_arm``)
# have bit 52 set, so the two never meet, and every seed stays below 2**53 (exact in JSON
# read by JavaScript).
PLAIN_SEED_LIMIT = 2**52


class RoundSampling(BaseModel):
    """``Round.sampling``: how the platform samples a round. Everything is optional."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(
        0, ge=0, lt=PLAIN_SEED_LIMIT - 1, description="Seed of every arm (the second arm of 'temperatures' adds 1)."
    )
    temperatures: tuple[float, float] = Field((0.7, 1.0), description="'temperatures': the two temperatures.")
    seeds: tuple[int, int] = Field((0, 1), description="'seeds': the two seeds.")
    temperature: float | None = Field(None, ge=0, le=2, description="Override of the versions' temperature.")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=32768, description="Override of the versions' max_tokens.")
    tag: str = Field("", max_length=64, description="Only prompts with this tag (default: all the project's).")

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, value: tuple[float, float]) -> tuple[float, float]:
        if any(t < 0 or t > 2 for t in value):
            raise ValueError("temperatures must lie between 0 and 2")
        if value[0] == value[1]:
            raise ValueError("the two temperatures must differ")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(s < 0 or s >= PLAIN_SEED_LIMIT for s in value):
            raise ValueError(f"seeds must lie between 0 and {PLAIN_SEED_LIMIT - 1}")
        if value[0] == value[1]:
            raise ValueError("the two seeds must differ")
        return value


def round_sampling_config(round_: Round) -> RoundSampling:
    try:
        return RoundSampling.model_validate(round_.sampling or {})
    except PydanticError as exc:
        raise ValidationError(
            {"sampling": [f"{k}: {'; '.join(v)}" for k, v in pydantic_errors(exc).items()]}
        ) from exc


@dataclass(frozen=True)
class Arm:
    """One version at one seed and one set of sampling parameters."""

    key: str
    version: ModelVersion
    seed: int
    params: SamplingParams  # seed included

    @property
    def generates(self) -> bool:
        return self.version.backend != Backend.IMPORTED


def _params(version: ModelVersion, config: RoundSampling, *, seed: int, temperature: float | None = None) -> SamplingParams:
    try:
        return sampling_params_for(
            version,
            temperature=temperature if temperature is not None else config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=seed,
        )
    except PydanticError as exc:
        raise ValidationError(
            {"default_sampling": [f"{version.name}: {k}: {'; '.join(v)}" for k, v in pydantic_errors(exc).items()]}
        ) from exc


def _arm(key: str, version: ModelVersion, config: RoundSampling, *, seed: int, temperature: float | None = None) -> Arm:
    """One arm. A sample is found again by (prompt, version, seed) - the database keeps one
    per triple - so a seed must never stand for two sets of parameters. An arm whose
    parameters differ from the version's own (a round's temperature, top_p or max_tokens,
    the 'temperatures' strategy) samples at a seed derived from the plain seed and those
    parameters (a digest, with bit 52 set; plain seeds lie below ``PLAIN_SEED_LIMIT``), so
    it reuses only answers made with exactly those settings, and the same round settings
    find the same answers again. An arm at the version's own parameters keeps the plain
    seed and shares its answers with every other round at that seed."""
    params = _params(version, config, seed=seed, temperature=temperature)
    own = _params(version, RoundSampling(), seed=seed)
    settings_of = params.model_dump(exclude={"seed"}, mode="json")
    if settings_of != own.model_dump(exclude={"seed"}, mode="json"):
        digest = hashlib.sha256(f"{seed}|{json.dumps(settings_of, sort_keys=True)}".encode()).digest()
        seed = PLAIN_SEED_LIMIT | (int.from_bytes(digest[:8], "big") % PLAIN_SEED_LIMIT)
        params = _params(version, config, seed=seed, temperature=temperature)
    return Arm(key, version, seed, params)


def arena_versions(round_: Round) -> list[ModelVersion]:
    versions = {round_.baseline_id: round_.baseline, round_.candidate_id: round_.candidate}
    for version in round_.arena_versions.order_by("id"):
        versions.setdefault(version.pk, version)
    return sorted(versions.values(), key=lambda v: v.pk)


def round_arms(round_: Round) -> list[Arm]:
    """The arms a round samples, from its pairing strategy (empty for imported pairs)."""
    config = round_sampling_config(round_)
    pairing = round_.pairing
    if pairing == PairingStrategy.OLD_VS_NEW:
        return [
            _arm("A", round_.baseline, config, seed=config.seed),
            _arm("B", round_.candidate, config, seed=config.seed),
        ]
    if pairing == PairingStrategy.TEMPERATURES:
        # Two seeds as well: samples are unique per (prompt, version, seed).
        low, high = config.temperatures
        version = round_.candidate
        return [
            _arm("A", version, config, seed=config.seed, temperature=low),
            _arm("B", version, config, seed=config.seed + 1, temperature=high),
        ]
    if pairing == PairingStrategy.SEEDS:
        version = round_.candidate
        first, second = config.seeds
        return [_arm("A", version, config, seed=first), _arm("B", version, config, seed=second)]
    if pairing == PairingStrategy.ARENA:
        versions = arena_versions(round_)
        if len(versions) < 2:
            raise ValidationError("An arena round needs at least two model versions.")
        return [_arm(f"v{v.pk}", v, config, seed=config.seed) for v in versions]
    return []


def round_prompt_ids(round_: Round, *, only: list[int] | None = None) -> list[int]:
    """The prompts a round's models answer: the project's prompts (with the round's tag,
    if it has one), live prompts excepted. Prompts imported later join on the next run.
    ``only`` keeps those of the given ids."""
    from annotation.selectors import prompt_list

    config = round_sampling_config(round_)
    qs = prompt_list(project=round_.project, tag=config.tag).exclude(source=LIVE_SOURCE)
    if only is not None:
        qs = qs.filter(pk__in=only)
    return list(qs.order_by("id").values_list("id", flat=True))


def round_pairs(round_: Round, arms: list[Arm], prompt_ids: list[int]) -> dict[int, tuple[Arm, Arm]]:
    """Which two arms answer each prompt. Pairwise strategies: A and B everywhere. Arena:
    the N·(N-1)/2 pairs of versions in rotation (shuffled once per round), so each pair
    gets the same number of prompts, give or take one."""
    if len(arms) < 2:
        return {}
    if round_.pairing != PairingStrategy.ARENA:
        return {pid: (arms[0], arms[1]) for pid in prompt_ids}
    pairs = list(itertools.combinations(arms, 2))
    random.Random(f"arena:{round_.pk}").shuffle(pairs)
    return {pid: pairs[index % len(pairs)] for index, pid in enumerate(prompt_ids)}


def round_generates(round_: Round) -> bool:
    """Whether opening this round makes the platform sample (some arm has a generating backend)."""
    try:
        return any(arm.generates for arm in round_arms(round_))
    except ValidationError:
        return round_.baseline.generates or round_.candidate.generates


# --- Starting sampling ---------------------------------------------------------------------


def _queue(job_ids: list[int]) -> None:
    from models_service.tasks import sample_job

    for job_id in job_ids:
        sample_job.delay(job_id)


def sampling_jobs_abandoned(*, limit: int) -> list[int]:
    """Jobs no worker is on: queued, or running, without a sign of life (creation or
    heartbeat) for longer than ``SAMPLING_STALE_SECONDS``."""
    stale_before = timezone.now() - timedelta(seconds=_setting("SAMPLING_STALE_SECONDS", 900))
    quiet = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale_before)
    return list(
        SamplingJob.objects.filter(
            Q(status=JobStatus.PENDING, created_at__lt=stale_before) & quiet
            | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
        )
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
    stale_before = timezone.now() - timedelta(seconds=_setting("SAMPLING_STALE_SECONDS", 600))
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
            raise ValidationError({"arena_versions": [f"No model version with id {', '.join(map(str, sorted(missing)))}."]})
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
    stale_before = now - timedelta(seconds=_setting("SAMPLING_STALE_SECONDS", 900))
    takeable = Q(status=JobStatus.PENDING) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
    if resume:
        takeable |= Q(status=JobStatus.FAILED)
    claimed = (
        SamplingJob.objects.filter(pk=job_id)
        .filter(takeable)
        .update(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, finished_at=None, runs=F("runs") + 1, error="")
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
            new.append(SamplingFailure(job=job, prompt_id=prompt_id, error=error.message[:4000], retryable=error.retryable))
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
    pattern = identity_pattern(project.identity_terms or [])
    from annotation.services import text_hash

    params = SamplingParams.model_validate({**job.params, "seed": job.seed}).request_fields()
    rows = []
    for prompt_id, generation in results.items():
        text = sample_text_clean(generation.text)
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
                identity_flagged=bool(pattern and pattern.search(text)),
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
            Sample.objects.filter(prompt_id=row.prompt_id, model_version_id=job.model_version_id, text_hash=row.text_hash)
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
    job = SamplingJob.objects.select_related("round__project", "round__baseline", "round__candidate", "model_version").get(
        pk=job_id
    )
    round_ = job.round
    project = round_.project
    adapter: BackendAdapter | None = None
    stopped = ""
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
            except Exception as exc:  # noqa: BLE001 - missing library, bad directory, no GPU: recorded below
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
    batch_size = getattr(adapter, "preferred_batch_size", None) or _setting("SAMPLING_BATCH_SIZE", 64)
    max_attempts = _setting("SAMPLING_MAX_ATTEMPTS", 3)
    params = SamplingParams.model_validate({**job.params, "seed": job.seed})
    queue: list[int] = list(missing)
    tries: dict[int, int] = {}
    answered = 0
    while queue:
        if Round.objects.filter(pk=job.round_id, status=RoundStatus.CLOSED).exists():
            # A lead closed the round: stop spending GPU time on it, and say what is left.
            closed = GenerationError("not sampled: the round was closed while sampling ran", retryable=False)
            _record_failures(job, {pid: closed for pid in dict.fromkeys(queue)})
            break
        batch, queue = queue[:batch_size], queue[batch_size:]
        messages = dict(Prompt.objects.filter(pk__in=batch).values_list("id", "messages"))
        batch = [pid for pid in batch if pid in messages]  # a prompt deleted meanwhile
        results = list(adapter.generate([GenerationRequest(messages=messages[pid], params=params) for pid in batch]))
        if len(results) != len(batch):  # a backend bug must not make prompts vanish
            results = (results + [GenerationError("the backend returned no answer for this prompt")] * len(batch))[: len(batch)]
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
            from django.core.cache import cache

            from annotation.assignment import open_rounds_key

            cache.delete(open_rounds_key(round_.project_id))
            transaction.on_commit(lambda: cache.delete(open_rounds_key(round_.project_id)))


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
            new.append(Comparison(round=round_, prompt_id=pid, sample_a_id=a, sample_b_id=b, required_judgments=overlap))
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
    created = 0
    rounds = Round.objects.filter(project_id=sample.prompt.project_id, sampling_jobs__model_version=sample.model_version_id)
    for round_ in rounds.exclude(status=RoundStatus.CLOSED).distinct():
        created += comparisons_build_sampled(round_=round_, prompt_ids=[sample.prompt_id])
    turns = LiveTurn.objects.filter(Q(sample_a=sample) | Q(sample_b=sample), comparison__isnull=True).select_related(
        "sample_a", "sample_b", "round__project"
    )
    for turn in turns:
        if turn.round.status == RoundStatus.CLOSED or not (turn.sample_a and turn.sample_b):
            continue
        if not all(_usable(s) for s in (turn.sample_a, turn.sample_b)):
            continue
        comparison, made = _comparison_get_or_create(turn, taken=0)
        LiveTurn.objects.filter(pk=turn.pk).update(comparison=comparison)
        created += int(made)
    return created


def _usable(sample: Sample) -> bool:
    return not sample.identity_flagged or sample.identity_released


# --- Live mode --------------------------------------------------------------------------------


class LiveUnavailable(ValidationError):
    """Live mode cannot run for this project now; the message says why, for the annotator."""


MAX_LIVE_PROMPT_CHARS = 20_000


def live_round(project: Project) -> Round:
    """The open round whose models answer live prompts: the newest one with two
    generating arms that can stream."""
    if not project.live_mode:
        raise LiveUnavailable("Live prompts are not switched on for this project.")
    for round_ in Round.objects.filter(project=project, status=RoundStatus.OPEN).select_related(
        "baseline", "candidate"
    ).order_by("-number"):
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
    limit = _setting("LIVE_TURNS_PER_HOUR", 120)
    if not limit:
        return
    since = timezone.now() - timedelta(hours=1)
    recent = LiveTurn.objects.filter(annotator=annotator, created_at__gte=since).order_by("created_at")
    if recent.count() < limit:
        return
    oldest = recent.values_list("created_at", flat=True)[recent.count() - limit]
    minutes = max(1, int((oldest + timedelta(hours=1) - timezone.now()).total_seconds() // 60) + 1)
    raise ValidationError(
        {"text": f"You have asked for {limit} live answers in the last hour, the most allowed. "
                 f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, or judge the pairs of the open round meanwhile."}
    )


def live_turn_start(*, project: Project, annotator: Any, text: str, parent: LiveTurn | None = None) -> LiveTurn:
    """Store the annotator's prompt (after the dialogue so far) and set up both answers."""
    from annotation.services import messages_hash, messages_normalize, messages_turns

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
            raise ValidationError({"parent": "The answer you preferred is empty, so the dialogue cannot go on. Start a new prompt."})
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
    key = (version.pk, version.backend + json.dumps(version.config, sort_keys=True))
    with _live_adapters_lock:
        adapter = _live_adapters.get(key)
        if adapter is None:
            for old in [k for k in _live_adapters if k[0] == version.pk]:
                _live_adapters.pop(old).close()
            adapter = backend_for(version)
            _live_adapters[key] = adapter
        return adapter


def live_stream(*, turn: LiveTurn, side: str) -> Iterator[StreamEvent]:
    """Stream one answer of a live turn (``side`` in sample terms, A or B) and store it
    when complete. An answer already stored is replayed at once (a reload, a retry).

    Blind protocol: an answer that names a model or its maker (the project's identity
    terms) must not reach the annotator. The stream holds back the last characters (as
    many as the longest term) until the text after them is known, and stops showing the
    answer as soon as a term matches; the answer is still generated and stored, flagged,
    for a lead to review, and the final event carries ``held``. A held answer is never
    replayed."""
    version = turn.version_a if side == Side.A else turn.version_b
    existing_id = turn.sample_a_id if side == Side.A else turn.sample_b_id
    if existing_id:
        sample = Sample.objects.get(pk=existing_id)
        if not _usable(sample):
            yield StreamEvent(done=True, generation=Generation(text="", finish_reason=""), extra={"held": True})
            return
        yield StreamEvent(delta=sample.text)
        yield StreamEvent(done=True, generation=Generation(text=sample.text, finish_reason=sample.finish_reason))
        return
    seed = turn.seed_a if side == Side.A else turn.seed_b
    params = SamplingParams.model_validate({**(turn.params_a if side == Side.A else turn.params_b), "seed": seed})
    terms = [t.strip() for t in turn.project.identity_terms or [] if t and t.strip()]
    pattern = identity_pattern(terms)
    # A term still being written lies within the last len(term) characters; one more for
    # the word boundary after it.
    hold = max((len(t) for t in terms), default=0) + 1 if pattern else 0
    text, sent, held = "", 0, False
    try:
        adapter = _live_adapter(version)
        final: Generation | None = None
        for event in adapter.stream(GenerationRequest(messages=turn.prompt.messages, params=params)):
            if event.done:
                final = event.generation
                continue
            # What the page shows must be what is stored (PostgreSQL text holds no NUL).
            text += sample_text_clean(event.delta)
            if held:
                continue
            if pattern and pattern.search(text):
                held = True
                continue
            safe = max(sent, len(text) - hold)
            if safe > sent:
                yield StreamEvent(delta=text[sent:safe])
                sent = safe
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"[:1000]
        field = "error_a" if side == Side.A else "error_b"
        LiveTurn.objects.filter(pk=turn.pk).update(**{field: message})
        raise LiveStreamFailed(message) from exc
    assert final is not None
    sample = live_sample_store(turn=turn, side=side, generation=final)
    if held or not _usable(sample):
        yield StreamEvent(done=True, generation=final, extra={"sample_id": sample.pk, "held": True})
        return
    if sample.text[sent:]:
        yield StreamEvent(delta=sample.text[sent:])
    yield StreamEvent(done=True, generation=final, extra={"sample_id": sample.pk})


class LiveStreamFailed(Exception):
    pass


@transaction.atomic
def live_sample_store(*, turn: LiveTurn, side: str, generation: Generation) -> Sample:
    from annotation.services import text_hash

    version = turn.version_a if side == Side.A else turn.version_b
    seed = turn.seed_a if side == Side.A else turn.seed_b
    params = SamplingParams.model_validate(
        {**(turn.params_a if side == Side.A else turn.params_b), "seed": seed}
    ).request_fields()
    text = sample_text_clean(generation.text)
    digest = text_hash(text)
    pattern = identity_pattern(turn.project.identity_terms or [])
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
                    identity_flagged=bool(pattern and pattern.search(text)),
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


def _comparison_get_or_create(turn: LiveTurn, *, taken: int) -> tuple[Comparison, bool]:
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
        taken=taken,
    )
    return comparison, True


@transaction.atomic
def live_assignment_create(*, turn: LiveTurn) -> LiveJudging:
    """Turn a live turn's two answers into a comparison handed to its author, the way the
    assignment engine hands one out (annotation.assignment._claim): take a slot, lease it,
    decide the left side (here: the side the answers were already streamed into).

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
    if not (_usable(turn.sample_a) and _usable(turn.sample_b)):
        return LiveJudging(
            None,
            "An answer was held back for a lead to review, so this turn is kept out of the data. "
            "Start a new prompt.",
            "flagged",
        )
    if turn.sample_a_id == turn.sample_b_id:
        return LiveJudging(None, "Both answers are the same text; there is nothing to compare. Start a new prompt.", "same")
    comparison, _ = _comparison_get_or_create(turn, taken=0)
    now = timezone.now()
    assignment = Assignment.objects.filter(comparison=comparison, annotator=turn.annotator).first()
    if assignment is None:
        # Gold-style overbooking is not allowed here: a full comparison was already
        # judged by others, so the author has nothing to add.
        slot = Comparison.objects.filter(pk=comparison.pk, taken__lt=F("required_judgments"))
        if not slot.update(taken=F("taken") + 1):
            return LiveJudging(None, "These two answers were already judged by others. Start a new prompt.", "taken")
        assignment = Assignment.objects.create(
            comparison=comparison,
            annotator=turn.annotator,
            left=turn.left,
            leased_at=now,
            lease_expires_at=now + timedelta(seconds=turn.project.lease_seconds),
        )
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
