"""Annotator quality (docs/statistics.md): per-annotator figures and the outliers a lead should look at.

Figures per annotator (``annotation.dashboards`` aggregates them in SQL):

- judgments, median seconds per judgment;
- **left share**: among verdicts for one side whose screen position is known, the share
  that picked the answer shown on the left, with an exact two-sided binomial test
  against ½ (position bias);
- **agreement with the majority**: on comparisons with other judgments, the share of
  this annotator's verdicts that a strict majority of the *other* annotators share
  (with two annotators per pair: simply agreeing with the other one);
- **gold accuracy** on gold items; **edit rate** (share of judgments with an edit).

Flags (``FLAG_RULES`` is what the page prints):

- ``position bias``: ≥ 20 sided verdicts, binomial p < 0.001 and the left share at least
  10 points away from ½;
- ``too fast``: ≥ 20 timed judgments and a median under max(3 s, ⅓ of the team's median);
- ``low agreement``: ≥ 20 comparisons shared with others, an agreement rate at least 10
  points under the rest of the team's pooled rate, and a one-sided binomial p < 0.01
  against that pooled rate;
- ``gold``: ≥ 10 gold items and an accuracy under 70%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from insights.stats.winrate import binomial_test

MIN_SIDED = 20
POSITION_BIAS_P = 0.001
POSITION_BIAS_GAP = 0.10
MIN_TIMED = 20
FAST_SECONDS = 3.0
FAST_RATIO = 1 / 3
MIN_SHARED = 20
AGREEMENT_GAP = 0.10
AGREEMENT_P = 0.01
GOLD_MIN_ITEMS = 10
GOLD_MIN_ACCURACY = 0.70

FLAG_RULES = (
    f"position bias: ≥ {MIN_SIDED} one-sided verdicts, binomial p < {POSITION_BIAS_P} and a left share ≥ "
    f"{POSITION_BIAS_GAP:.0%} away from 50%",
    f"too fast: ≥ {MIN_TIMED} timed judgments and a median under max({FAST_SECONDS:g} s, ⅓ of the team median)",
    f"low agreement: ≥ {MIN_SHARED} shared comparisons, ≥ {AGREEMENT_GAP:.0%} under the rest of the team and "
    f"one-sided binomial p < {AGREEMENT_P}",
    f"gold: ≥ {GOLD_MIN_ITEMS} gold items and accuracy under {GOLD_MIN_ACCURACY:.0%}",
)


@dataclass(frozen=True)
class AnnotatorFigures:
    """The raw aggregates of one annotator, as SQL returns them."""

    annotator_id: int
    username: str
    judgments: int
    median_ms: float | None = None
    timed: int = 0
    sided: int = 0
    chose_left: int = 0
    shared: int = 0
    agreed: int = 0
    gold_items: int = 0
    gold_correct: int = 0
    edits: int = 0


@dataclass(frozen=True)
class AnnotatorQuality:
    figures: AnnotatorFigures
    median_seconds: float | None
    left_share: float | None
    left_p: float | None
    agreement: float | None
    agreement_p: float | None
    gold_accuracy: float | None
    edit_rate: float | None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self.figures)
        data.pop("median_ms")
        data.update(
            median_seconds=self.median_seconds,
            left_share=self.left_share,
            left_p=self.left_p,
            agreement_with_majority=self.agreement,
            agreement_p=self.agreement_p,
            gold_accuracy=self.gold_accuracy,
            edit_rate=self.edit_rate,
            flags=list(self.flags),
        )
        return data


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def assess(figures: Sequence[AnnotatorFigures]) -> list[AnnotatorQuality]:
    """Rates, tests and flags for each annotator, comparing each with the rest of the team."""
    medians = [f.median_ms / 1000 for f in figures if f.median_ms is not None and f.timed > 0]
    team_median = float(np.median(medians)) if medians else None
    fast_limit = max(FAST_SECONDS, FAST_RATIO * team_median) if team_median is not None else FAST_SECONDS
    shared_total = sum(f.shared for f in figures)
    agreed_total = sum(f.agreed for f in figures)
    out: list[AnnotatorQuality] = []
    for f in figures:
        flags: list[str] = []
        left_share = _share(f.chose_left, f.sided)
        left_p = binomial_test(f.chose_left, f.sided) if f.sided else None
        if (
            f.sided >= MIN_SIDED
            and left_p is not None
            and left_share is not None
            and left_p < POSITION_BIAS_P
            and abs(left_share - 0.5) >= POSITION_BIAS_GAP
        ):
            flags.append("position bias")
        median_seconds = f.median_ms / 1000 if f.median_ms is not None and f.timed else None
        if median_seconds is not None and f.timed >= MIN_TIMED and median_seconds < fast_limit:
            flags.append("too fast")
        agreement = _share(f.agreed, f.shared)
        agreement_p = None
        others_shared = shared_total - f.shared
        if agreement is not None and others_shared > 0:
            others_rate = (agreed_total - f.agreed) / others_shared
            agreement_p = binomial_test(f.agreed, f.shared, min(max(others_rate, 1e-12), 1 - 1e-12), alternative="less")
            if f.shared >= MIN_SHARED and others_rate - agreement >= AGREEMENT_GAP and agreement_p < AGREEMENT_P:
                flags.append("low agreement")
        gold_accuracy = _share(f.gold_correct, f.gold_items)
        if gold_accuracy is not None and f.gold_items >= GOLD_MIN_ITEMS and gold_accuracy < GOLD_MIN_ACCURACY:
            flags.append("gold")
        out.append(
            AnnotatorQuality(
                figures=f,
                median_seconds=median_seconds,
                left_share=left_share,
                left_p=left_p,
                agreement=agreement,
                agreement_p=agreement_p,
                gold_accuracy=gold_accuracy,
                edit_rate=_share(f.edits, f.judgments),
                flags=flags,
            )
        )
    return out
