"""Win-rate statistics checked against scipy, statsmodels and hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from insights.stats.winrate import (
    Counts,
    Patterns,
    binomial_test,
    bootstrap_interval,
    sign_test,
    wilson_interval,
    win_rate,
)


def test_ties_and_both_bad_count_half_and_cant_judge_is_left_out():
    counts = Counts(wins=50, losses=30, ties=10, both_bad=10, cant_judge=7)

    result = win_rate(counts)

    assert counts.n == 100 and counts.total == 107
    assert result.rate == pytest.approx((50 + 0.5 * 20) / 100)


@pytest.mark.parametrize("score,n", [(0, 10), (3, 10), (10, 10), (41.5, 97), (1234.5, 4000), (1, 1)])
def test_wilson_interval_matches_statsmodels(score, n):
    low, high = wilson_interval(score, n)
    ref_low, ref_high = proportion_confint(score, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(ref_low, abs=1e-12)
    assert high == pytest.approx(ref_high, abs=1e-12)


def test_wilson_interval_by_hand_for_8_of_10():
    # p = 0.8, z = 1.96: centre (0.8 + 0.19208)/1.38415, half 1.96·sqrt(0.016 + 0.0096040)/1.38415
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


def test_wilson_interval_without_judgments_is_none():
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize(
    "k,n,p", [(0, 0, 0.5), (0, 1, 0.5), (7, 20, 0.5), (60, 100, 0.5), (3, 40, 0.2), (523, 1000, 0.5), (9, 10, 0.7)]
)
@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_binomial_test_matches_scipy(k, n, p, alternative):
    expected = 1.0 if n == 0 else binomtest(k, n, p, alternative=alternative).pvalue
    assert binomial_test(k, n, p, alternative=alternative) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_binomial_test_stays_exact_for_large_counts():
    assert binomial_test(251_000, 500_000) == pytest.approx(binomtest(251_000, 500_000).pvalue, rel=1e-6)


def test_sign_test_drops_ties_and_is_none_without_decisive_verdicts():
    assert sign_test(30, 12) == pytest.approx(binomtest(30, 42).pvalue)
    assert sign_test(0, 0) is None
    assert win_rate(Counts(ties=5)).sign_test_p is None


def test_bootstrap_resamples_prompts_like_a_plain_loop_over_prompt_rows():
    rng = np.random.default_rng(7)
    # 300 prompts judged by two annotators each: per-prompt (w, l, t, bb, cj).
    outcomes = rng.choice(5, size=(300, 2), p=[0.45, 0.3, 0.15, 0.05, 0.05])
    per_prompt = np.stack([(outcomes == k).sum(axis=1) for k in range(5)], axis=1)
    patterns = Patterns.from_prompts([tuple(row) for row in per_prompt])

    low, high = bootstrap_interval(patterns, rounds=4000)

    # Reference: draw prompt rows with replacement, the straightforward way.
    score = per_prompt[:, 0] + 0.5 * (per_prompt[:, 2] + per_prompt[:, 3])
    n = per_prompt[:, :4].sum(axis=1)
    draws = np.random.default_rng(1).integers(0, 300, size=(4000, 300))
    rates = score[draws].sum(axis=1) / n[draws].sum(axis=1)
    ref_low, ref_high = np.percentile(rates, [2.5, 97.5])
    assert low == pytest.approx(ref_low, abs=0.006)
    assert high == pytest.approx(ref_high, abs=0.006)
    assert patterns.prompt_count == 300 and len(patterns.prompts) < 300


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    patterns = Patterns.from_prompts([(1, 0, 0, 0, 0)] * 60 + [(0, 1, 0, 0, 0)] * 40 + [(0, 0, 1, 0, 0)] * 20)
    result = win_rate(patterns.totals(), patterns)

    assert result.bootstrap == bootstrap_interval(patterns)
    assert result.bootstrap[0] < result.rate < result.bootstrap[1]
    assert result.rate == pytest.approx(70 / 120)


def test_no_judgments_gives_no_rate_and_no_intervals():
    patterns = Patterns.from_rows([])
    result = win_rate(patterns.totals(), patterns)

    assert (result.rate, result.wilson, result.bootstrap, result.sign_test_p) == (None, None, None, None)
    assert result.counts.total == 0


def test_only_cant_judge_gives_no_rate():
    patterns = Patterns.from_prompts([(0, 0, 0, 0, 2)] * 5)
    result = win_rate(patterns.totals(), patterns)

    assert result.rate is None and result.bootstrap is None and result.counts.cant_judge == 10


def test_all_ties_is_exactly_one_half_with_a_degenerate_bootstrap():
    patterns = Patterns.from_prompts([(0, 0, 1, 0, 0)] * 30 + [(0, 0, 0, 1, 0)] * 10)
    result = win_rate(patterns.totals(), patterns)

    assert result.rate == 0.5
    assert result.bootstrap == (0.5, 0.5)
    low, high = result.wilson
    assert low < 0.5 < high
    assert result.sign_test_p is None


def test_a_candidate_that_never_wins_has_rate_zero_and_a_tiny_p_value():
    patterns = Patterns.from_prompts([(0, 1, 0, 0, 0)] * 25)
    result = win_rate(patterns.totals(), patterns)

    assert result.rate == 0.0
    assert result.wilson[0] == pytest.approx(0.0, abs=1e-12) and result.wilson[1] == pytest.approx(
        proportion_confint(0, 25, method="wilson")[1]
    )
    assert result.bootstrap == (0.0, 0.0)
    assert result.sign_test_p == pytest.approx(binomtest(0, 25).pvalue)


def test_as_dict_names_every_figure():
    data = win_rate(Counts(wins=3, losses=1, ties=2)).as_dict()
    assert set(data) >= {
        "wins",
        "losses",
        "ties",
        "both_bad",
        "cant_judge",
        "n",
        "win_rate",
        "wilson_low",
        "wilson_high",
        "bootstrap_low",
        "bootstrap_high",
        "sign_test_p",
    }
