"""Inter-annotator agreement on comparisons judged by several annotators (docs/statistics.md).

Inputs are per-item category counts: one row per distinct count vector with how many
comparisons (items) share it — what SQL returns after grouping twice — so nothing
here grows with the number of judgments. All coefficients are the textbook ones for
nominal categories:

- **pairwise agreement**: the share of agreeing pairs among all pairs of annotators
  on the same item, Σ_i Σ_c n_ic(n_ic − 1) / Σ_i n_i(n_i − 1);
- **Fleiss' kappa** (Fleiss 1971): (P̄ − P̄_e)/(1 − P̄_e), P̄ the mean per-item agreement,
  P̄_e = Σ_c p_c² with p_c the overall category shares (items may have different
  numbers of annotators; with a constant number this is Fleiss' formula exactly);
- **Krippendorff's alpha**, nominal, from the coincidence matrix (Krippendorff 2011);
- **Gwet's AC1** for several raters (Gwet 2008): (p_a − p_e)/(1 − p_e), p_e =
  Σ_c π_c(1 − π_c)/(Q − 1) with π_c the mean per-item share and Q the number of
  categories of the scale;
- **Cohen's kappa** for one pair of annotators from their confusion table.

Items judged by fewer than two annotators carry no agreement information and are
dropped. A coefficient whose chance agreement is 1 (everyone always used one
category) is undefined and returned as None; raw agreement is still reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Verdicts in sample terms, and the same with the strength (imports may lack a strength).
CATEGORIES = ("A", "B", "tie", "both_bad", "cant_judge")
STRENGTHS = ("significantly", "better", "slightly", "negligibly")
STRENGTH_CATEGORIES = tuple(f"{side}:{s}" for side in ("A", "B") for s in STRENGTHS) + ("tie", "both_bad", "cant_judge")


def _clean(counts: np.ndarray, items: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError("counts must be a 2-D array: items × categories")
    weights = np.ones(counts.shape[0]) if items is None else np.asarray(items, dtype=np.float64)
    keep = counts.sum(axis=1) >= 2
    return counts[keep], weights[keep]


def pairwise_agreement(counts: np.ndarray, items: np.ndarray | None = None) -> float | None:
    counts, w = _clean(counts, items)
    n = counts.sum(axis=1)
    pairs = (w * n * (n - 1)).sum()
    if pairs == 0:
        return None
    return float((w * (counts * (counts - 1)).sum(axis=1)).sum() / pairs)


def fleiss_kappa(counts: np.ndarray, items: np.ndarray | None = None) -> float | None:
    counts, w = _clean(counts, items)
    if w.sum() == 0:
        return None
    n = counts.sum(axis=1)
    per_item = ((counts * counts).sum(axis=1) - n) / (n * (n - 1))
    p_bar = (w * per_item).sum() / w.sum()
    shares = (w[:, None] * counts).sum(axis=0) / (w * n).sum()
    p_e = float((shares * shares).sum())
    if p_e >= 1.0 - 1e-12:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


def krippendorff_alpha(counts: np.ndarray, items: np.ndarray | None = None) -> float | None:
    """Nominal Krippendorff's alpha from per-item value counts."""
    counts, w = _clean(counts, items)
    if w.sum() == 0:
        return None
    m = counts.sum(axis=1)
    # Coincidences: o_ck = Σ_u (n_uc n_uk − [c = k] n_uc) / (m_u − 1), weighted by multiplicity.
    scaled = counts * (w / (m - 1))[:, None]
    coincidence = scaled.T @ counts - np.diag(scaled.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    total = n_c.sum()
    observed_disagreement = coincidence.sum() - np.trace(coincidence)
    expected_disagreement = (n_c.sum() ** 2 - (n_c * n_c).sum()) / (total - 1)
    if expected_disagreement <= 0:
        return None
    return float(1.0 - observed_disagreement / expected_disagreement)


def gwet_ac1(counts: np.ndarray, items: np.ndarray | None = None, *, categories: int | None = None) -> float | None:
    counts, w = _clean(counts, items)
    if w.sum() == 0:
        return None
    q = categories or counts.shape[1]
    if q < 2:
        return None
    n = counts.sum(axis=1)
    per_item = ((counts * (counts - 1)).sum(axis=1)) / (n * (n - 1))
    p_a = (w * per_item).sum() / w.sum()
    pi = (w[:, None] * (counts / n[:, None])).sum(axis=0) / w.sum()
    p_e = float((pi * (1 - pi)).sum() / (q - 1))
    if p_e >= 1.0:
        return None
    return float((p_a - p_e) / (1.0 - p_e))


def cohen_kappa(table: np.ndarray) -> float | None:
    """Cohen's kappa from a square confusion table (rows: annotator 1, columns: annotator 2)."""
    table = np.asarray(table, dtype=np.float64)
    total = table.sum()
    if total == 0:
        return None
    observed = np.trace(table) / total
    expected = float((table.sum(axis=1) * table.sum(axis=0)).sum() / (total * total))
    if expected >= 1.0 - 1e-12:
        return None
    return float((observed - expected) / (1.0 - expected))


@dataclass(frozen=True)
class Agreement:
    items: int
    judgments: int
    pairwise: float | None
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    gwet_ac1: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "judgments": self.judgments,
            "pairwise_agreement": self.pairwise,
            "fleiss_kappa": self.fleiss_kappa,
            "krippendorff_alpha": self.krippendorff_alpha,
            "gwet_ac1": self.gwet_ac1,
        }


def agreement(counts: np.ndarray, items: np.ndarray | None = None) -> Agreement:
    """All multi-rater coefficients for one category scheme (the columns of ``counts``)."""
    counts = np.asarray(counts, dtype=np.float64)
    cleaned, w = _clean(counts, items)
    return Agreement(
        items=int(w.sum()),
        judgments=int((w * cleaned.sum(axis=1)).sum()),
        pairwise=pairwise_agreement(counts, items),
        fleiss_kappa=fleiss_kappa(counts, items),
        krippendorff_alpha=krippendorff_alpha(counts, items),
        gwet_ac1=gwet_ac1(counts, items),
    )
