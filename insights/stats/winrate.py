"""Old-vs-new win rates (docs/statistics.md).

Policy, shown on the dashboard (``POLICY``):

- win rate = (wins + ½·ties + ½·both-bad) / N, where N = wins + losses + ties + both-bad;
- "both bad" counts as a tie: neither answer was preferred, exactly like FastChat's
  ``tie (bothbad)``;
- "can't judge" is left out of N (the annotator gave no verdict); it is counted and shown.

Intervals:

- **Wilson** score interval on the score share ``(wins + ½·ties)/N`` with n = N. With
  ties the score is not a binomial count; the interval is then a little conservative
  (a tie has half the variance of a coin flip).
- **Percentile bootstrap over prompts**: prompts are drawn with replacement (all
  judgments of a drawn prompt come along), the win rate is the ratio of the summed
  scores to the summed N, 2.5/97.5 percentiles. Prompts with the same per-prompt
  counts are interchangeable, so drawing P prompts is a multinomial draw over the
  distinct per-prompt *patterns* that SQL returns with their multiplicities: exactly
  the same distribution as resampling prompt rows, at a cost independent of P.
- **Sign test**: exact two-sided binomial test of wins against losses, ties and
  both-bad dropped (H0: either model is preferred with probability ½).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
BOOTSTRAP_ROUNDS = 2000
BOOTSTRAP_SEED = 0

POLICY = (
    "Win rate = (wins + ½ ties + ½ both-bad) / N, with N = wins + losses + ties + both-bad. "
    "“Both bad” counts as a tie (neither answer preferred); “can’t judge” is left out of N. "
    "Intervals are 95%: Wilson on the score share, and a percentile bootstrap that resamples prompts "
    f"({BOOTSTRAP_ROUNDS} rounds). The sign test compares wins with losses, ties dropped."
)


@dataclass(frozen=True)
class Counts:
    """Verdicts in candidate terms: a win means the candidate (new model) was preferred."""

    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0
    cant_judge: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.wins, self.losses, self.ties, self.both_bad, self.cant_judge)

    @property
    def n(self) -> int:
        """Judgments that count towards the win rate (can't-judge excluded)."""
        return self.wins + self.losses + self.ties + self.both_bad

    @property
    def score(self) -> float:
        return self.wins + 0.5 * (self.ties + self.both_bad)

    @property
    def total(self) -> int:
        return self.n + self.cant_judge


@dataclass(frozen=True)
class Patterns:
    """Distinct per-prompt count vectors and how many prompts have each.

    Columns of ``counts``: wins, losses, ties, both-bad, can't-judge (one row per pattern).
    """

    counts: np.ndarray  # shape (k, 5), integers
    prompts: np.ndarray  # shape (k,), how many prompts share the row

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, ...]]) -> Patterns:
        if not rows:
            return cls(np.zeros((0, 5), dtype=np.int64), np.zeros(0, dtype=np.int64))
        array = np.asarray(rows, dtype=np.int64)
        return cls(array[:, :5], array[:, 5])

    @classmethod
    def from_prompts(cls, per_prompt: list[tuple[int, int, int, int, int]]) -> Patterns:
        """From one count row per prompt (as tests and small callers have them)."""
        if not per_prompt:
            return cls.from_rows([])
        unique, multiplicity = np.unique(np.asarray(per_prompt, dtype=np.int64), axis=0, return_counts=True)
        return cls(unique, multiplicity)

    def totals(self) -> Counts:
        summed = (self.counts * self.prompts[:, None]).sum(axis=0) if len(self.prompts) else np.zeros(5, int)
        return Counts(*(int(x) for x in summed))

    @property
    def prompt_count(self) -> int:
        return int(self.prompts.sum())


@dataclass(frozen=True)
class WinRate:
    counts: Counts
    prompts: int | None
    rate: float | None
    wilson: tuple[float, float] | None
    bootstrap: tuple[float, float] | None
    sign_test_p: float | None
    extras: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self.counts)
        data.update(
            n=self.counts.n,
            prompts=self.prompts,
            win_rate=self.rate,
            wilson_low=self.wilson[0] if self.wilson else None,
            wilson_high=self.wilson[1] if self.wilson else None,
            bootstrap_low=self.bootstrap[0] if self.bootstrap else None,
            bootstrap_high=self.bootstrap[1] if self.bootstrap else None,
            sign_test_p=self.sign_test_p,
        )
        data.update(self.extras)
        return data


def wilson_interval(successes: float, n: float, *, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``successes`` out of ``n`` (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _log_binomial_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = k) for k = 0..n, X ~ Binomial(n, p), without scipy (vectorised)."""
    k = np.arange(n + 1, dtype=np.float64)
    # log C(n, k) as a running sum of log((n - i + 1) / i): exact enough for n in the millions.
    steps = np.log(np.arange(n, 0, -1, dtype=np.float64)) - np.log(np.arange(1, n + 1, dtype=np.float64))
    log_choose = np.concatenate(([0.0], np.cumsum(steps)))
    if p <= 0.0 or p >= 1.0:
        out = np.full(n + 1, -np.inf)
        out[0 if p <= 0.0 else n] = 0.0
        return out
    return log_choose + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_test(k: int, n: int, p: float = 0.5, *, alternative: str = "two-sided") -> float:
    """Exact binomial test p-value, the same definition as ``scipy.stats.binomtest``.

    Two-sided: the total probability of outcomes no more likely than the observed one
    (with scipy's relative tolerance of 1e-7).
    """
    if not 0 <= k <= n:
        raise ValueError("k must lie between 0 and n")
    if n == 0:
        return 1.0
    pmf = np.exp(_log_binomial_pmf(n, p))
    if alternative == "less":
        return float(min(1.0, pmf[: k + 1].sum()))
    if alternative == "greater":
        return float(min(1.0, pmf[k:].sum()))
    if alternative != "two-sided":
        raise ValueError("alternative must be two-sided, less or greater")
    observed = pmf[k]
    return float(min(1.0, pmf[pmf <= observed * (1 + 1e-7)].sum()))


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided sign test of wins against losses (ties dropped); None without any."""
    n = wins + losses
    if n == 0:
        return None
    return binomial_test(wins, n, 0.5)


def bootstrap_interval(
    patterns: Patterns,
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the win rate, resampling prompts.

    Draws ``rounds`` samples of P prompts with replacement as multinomial counts over the
    distinct per-prompt patterns. A resample whose N is 0 (only can't-judge drawn) has no
    win rate and is dropped.
    """
    total_prompts = patterns.prompt_count
    if total_prompts == 0:
        return None
    counts = patterns.counts.astype(np.float64)
    score = counts[:, 0] + 0.5 * (counts[:, 2] + counts[:, 3])
    n = counts[:, 0] + counts[:, 1] + counts[:, 2] + counts[:, 3]
    if n.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(total_prompts, patterns.prompts / total_prompts, size=rounds).astype(np.float64)
    scores = drawn @ score
    ns = drawn @ n
    valid = ns > 0
    rates = scores[valid] / ns[valid]
    if rates.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return (float(low), float(high))


def win_rate(counts: Counts, patterns: Patterns | None = None, *, rounds: int = BOOTSTRAP_ROUNDS) -> WinRate:
    """Everything the dashboard shows for one slice of judgments.

    ``patterns`` (per-prompt counts) enable the bootstrap; slices that cut across
    prompts (by annotator, by strength) have none and show Wilson only.
    """
    rate = counts.score / counts.n if counts.n else None
    return WinRate(
        counts=counts,
        prompts=patterns.prompt_count if patterns is not None else None,
        rate=rate,
        wilson=wilson_interval(counts.score, counts.n),
        bootstrap=bootstrap_interval(patterns, rounds=rounds) if patterns is not None else None,
        sign_test_p=sign_test(counts.wins, counts.losses),
    )


def decisive_rate(wins: int, losses: int) -> WinRate:
    """Win rate among decisive verdicts only (the per-strength view: ties carry no strength)."""
    counts = Counts(wins=wins, losses=losses)
    return win_rate(counts)
