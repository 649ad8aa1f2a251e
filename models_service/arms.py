"""How a round is sampled: its settings (``Round.sampling``), its *arms* (a version at
one seed and set of sampling parameters each) and which two arms answer each prompt.

The pairing strategy picks the arms: old vs new -> the baseline and the candidate at one
seed; temperatures -> the candidate at two temperatures; seeds -> the candidate at two
seeds; arena -> every version taking part, each answering only its share of the prompts
(pairs rotate so that every pair of versions gets the same number of prompts, +-1).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from annotation.models import PairingStrategy, Round, Sample
from annotation.selectors import prompt_list
from models_service.backends import SamplingParams, pydantic_errors, sampling_params_for
from models_service.models import Backend, ModelVersion

# Prompts annotators write in live mode: answered live, never by a round's sampling jobs.
LIVE_SOURCE = "live"

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
        raise ValidationError({"sampling": [f"{k}: {'; '.join(v)}" for k, v in pydantic_errors(exc).items()]}) from exc


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


def _params(
    version: ModelVersion, config: RoundSampling, *, seed: int, temperature: float | None = None
) -> SamplingParams:
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
        return dict.fromkeys(prompt_ids, (arms[0], arms[1]))
    pairs = list(itertools.combinations(arms, 2))
    random.Random(f"arena:{round_.pk}").shuffle(pairs)
    return {pid: pairs[index % len(pairs)] for index, pid in enumerate(prompt_ids)}


def round_generates(round_: Round) -> bool:
    """Whether opening this round makes the platform sample (some arm has a generating backend)."""
    try:
        return any(arm.generates for arm in round_arms(round_))
    except ValidationError:
        return round_.baseline.generates or round_.candidate.generates


def sample_usable(sample: Sample) -> bool:
    """Whether an answer may be shown to annotators: not flagged for naming a model, or
    released by a lead."""
    return not sample.identity_flagged or sample.identity_released
