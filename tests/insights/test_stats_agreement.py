"""Agreement coefficients against statsmodels, published worked examples and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from insights.stats.agreement import (
    agreement,
    cohen_kappa,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    pairwise_agreement,
)


def counts_from_labels(items: list[list[int]], categories: int) -> np.ndarray:
    table = np.zeros((len(items), categories))
    for i, labels in enumerate(items):
        for label in labels:
            table[i, label] += 1
    return table


def test_fleiss_kappa_matches_statsmodels():
    table = np.random.default_rng(1).multinomial(4, [0.5, 0.2, 0.2, 0.1], size=40)
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss_kappa(table), abs=1e-12)


def test_fleiss_kappa_on_fleiss_1971_style_table_matches_statsmodels():
    # The Wikipedia worked example (14 raters, 10 subjects, 5 categories): kappa = 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-5)
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss_kappa(table), abs=1e-12)


def test_cohen_kappa_matches_statsmodels():
    table = np.array([[20, 5, 1], [4, 15, 3], [2, 2, 8]])
    assert cohen_kappa(table) == pytest.approx(sm_cohens_kappa(table).kappa, abs=1e-12)


def test_cohen_kappa_by_hand():
    # Two annotators, 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 (the Wikipedia example): 0.4.
    assert cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)


def test_krippendorff_alpha_reproduces_krippendorffs_nominal_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 observers, 12 units,
    # with missing values: nominal alpha = 0.743.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[obs[u] - 1 for obs in observers if obs[u] is not None] for u in range(12)]
    assert krippendorff_alpha(counts_from_labels(units, 5)) == pytest.approx(0.743, abs=5e-4)


def brute_force(items: list[list[int]], categories: int) -> dict[str, float]:
    """Straight from the definitions, looping over items and rater pairs."""
    items = [labels for labels in items if len(labels) >= 2]
    agreeing = pairs = 0
    per_item = []
    for labels in items:
        same = sum(1 for x, y in itertools.permutations(labels, 2) if x == y)
        total = len(labels) * (len(labels) - 1)
        agreeing += same
        pairs += total
        per_item.append(same / total)
    p_a = float(np.mean(per_item))
    pi = np.mean([[labels.count(c) / len(labels) for c in range(categories)] for labels in items], axis=0)
    p_e = float((pi * (1 - pi)).sum() / (categories - 1))
    return {"pairwise": agreeing / pairs, "ac1": (p_a - p_e) / (1 - p_e)}


def test_pairwise_agreement_and_gwet_ac1_match_a_brute_force_computation():
    rng = np.random.default_rng(4)
    items = [list(rng.choice(5, size=rng.integers(2, 5), p=[0.4, 0.35, 0.15, 0.05, 0.05])) for _ in range(80)]
    items += [[0]]  # one annotator only: ignored
    counts = counts_from_labels(items, 5)
    expected = brute_force(items, 5)

    assert pairwise_agreement(counts) == pytest.approx(expected["pairwise"])
    assert gwet_ac1(counts) == pytest.approx(expected["ac1"])


def test_gwet_ac1_two_raters_by_hand():
    # Two raters, binary, 100 items: 40 both yes, 10 yes/no, 20 no/yes, 30 both no.
    # p_a = 0.7; π_yes = (0.5 + 0.6)/2 = 0.55; p_e = 2·0.55·0.45 = 0.495; AC1 = 0.205/0.505.
    items = [[0, 0]] * 40 + [[0, 1]] * 10 + [[1, 0]] * 20 + [[1, 1]] * 30
    assert gwet_ac1(counts_from_labels(items, 2)) == pytest.approx(0.205 / 0.505)


def test_patterns_with_multiplicities_give_the_same_numbers_as_rows():
    items = [[0, 0], [0, 1], [0, 0], [2, 2], [0, 1], [0, 0]]
    counts = counts_from_labels(items, 3)
    unique, multiplicity = np.unique(counts, axis=0, return_counts=True)

    full, grouped = agreement(counts), agreement(unique, multiplicity)
    assert full.as_dict() == pytest.approx(grouped.as_dict())
    assert grouped.items == 6 and grouped.judgments == 12


def test_everyone_always_picking_tie_has_undefined_kappas_but_full_agreement():
    counts = counts_from_labels([[2, 2]] * 10, 5)
    result = agreement(counts)

    assert result.pairwise == 1.0
    assert result.fleiss_kappa is None and result.krippendorff_alpha is None
    assert gwet_ac1(counts) == 1.0
    assert cohen_kappa(np.array([[10.0]])) is None


def test_no_overlapping_judgments_give_nothing():
    result = agreement(np.zeros((0, 5)))
    assert result.items == 0
    assert (result.pairwise, result.fleiss_kappa, result.krippendorff_alpha, result.gwet_ac1) == (
        None,
        None,
        None,
        None,
    )
