"""Bradley-Terry ratings: the same numbers as FastChat's method on the same battles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from insights.stats import bradley_terry as bt


def fastchat_reference(battles: bt.Battles) -> np.ndarray:
    """FastChat's compute_bt, re-implemented: unregularised weighted BCE, L-BFGS-B from zero,
    ties as 0.5, rating = 400·r + 1000 (fastchat/serve/monitor/rating_systems.py)."""
    matchups = np.column_stack([battles.a, battles.b])
    alpha = math.log(10.0)

    def loss_and_grad(ratings):
        pair = ratings[matchups]
        probs = expit(alpha * (pair[:, 0] - pair[:, 1]))
        loss = -(
            (np.log(probs) * battles.outcome + np.log(1.0 - probs) * (1.0 - battles.outcome)) * battles.weight
        ).sum()
        grads = -alpha * (battles.outcome - probs) * battles.weight
        model_grad = np.zeros_like(ratings)
        np.add.at(model_grad, matchups, grads[:, None] * np.array([1.0, -1.0]))
        return loss, model_grad

    result = minimize(
        loss_and_grad,
        np.zeros(len(battles.names)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 1000, "gtol": 1e-9},
    )
    return result.x * 400 + 1000


def simulated(k: int, n: int, seed: int = 3) -> bt.Battles:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 0.4, k)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p = 1 / (1 + 10 ** (strength[b] - strength[a]))
    u = rng.random(n)
    outcome = np.where(u < 0.85 * p, 1.0, np.where(u < 0.85 * p + 0.15, 0.5, 0.0))
    return bt.Battles.from_rows((f"v{x}", f"v{y}", o, 1) for x, y, o in zip(a, b, outcome, strict=True))


def test_ratings_agree_with_fastchats_method_on_the_same_battles():
    battles = simulated(8, 6000)

    ours = bt.rate(battles, rounds=0).rating
    reference = fastchat_reference(battles)

    assert np.abs(ours - reference).max() < 0.05  # Elo points
    assert ours.mean() == pytest.approx(1000)


def test_two_models_have_the_closed_form_rating_gap():
    # 30 wins, 10 losses, 10 ties for x: score 35 of 50, gap = 400·log10(35/15).
    battles = bt.Battles.from_rows([("x", "y", 1.0, 30), ("x", "y", 0.0, 10), ("y", "x", 0.5, 10)])
    ratings = bt.rate(battles, rounds=0)
    by_name = dict(zip(ratings.names, ratings.rating, strict=True))

    # The ridge (RIDGE = 0.01) moves the gap by about 0.01 Elo point on 50 battles.
    assert by_name["x"] - by_name["y"] == pytest.approx(400 * math.log10(35 / 15), abs=0.05)
    assert by_name["x"] + by_name["y"] == pytest.approx(2000)


def test_a_chosen_version_anchors_the_scale_at_1000():
    battles = simulated(5, 3000)
    free = bt.rate(battles, rounds=20)
    anchored = bt.rate(battles, rounds=20, anchor="v2")
    i = anchored.names.index("v2")

    assert anchored.rating[i] == pytest.approx(1000)
    assert anchored.anchor == "v2"
    assert np.allclose(anchored.rating - anchored.rating[i], free.rating - free.rating[i])
    assert anchored.low[i] == pytest.approx(1000) and anchored.high[i] == pytest.approx(1000)


def test_bootstrap_intervals_match_per_replicate_fastchat_fits():
    battles = simulated(4, 800, seed=11)
    ours = bt.rate(battles, rounds=30, seed=5)

    rng = np.random.default_rng(5)
    drawn = rng.multinomial(int(battles.total), battles.weight / battles.weight.sum(), size=30)
    boots = []
    for weights in drawn:
        replicate = bt.Battles(battles.names, battles.a, battles.b, battles.outcome, weights.astype(float))
        keep = replicate.weight > 0
        replicate = bt.Battles(
            battles.names, battles.a[keep], battles.b[keep], battles.outcome[keep], replicate.weight[keep]
        )
        boots.append(fastchat_reference(replicate))
    low, high = np.percentile(np.array(boots), [2.5, 97.5], axis=0)

    assert np.abs(ours.low - low).max() < 0.05
    assert np.abs(ours.high - high).max() < 0.05
    assert np.all(ours.low <= ours.rating) and np.all(ours.rating <= ours.high)


def test_rank_counts_versions_whose_interval_lies_wholly_above():
    low = np.array([1100.0, 1090.0, 1000.0, 900.0])
    high = np.array([1200.0, 1150.0, 1095.0, 950.0])
    assert bt.ranks_from_intervals(low, high).tolist() == [1, 1, 2, 4]


def test_predicted_win_matrix_is_the_elo_formula():
    matrix = bt.win_probability(np.array([1200.0, 1000.0]))
    assert matrix[0, 1] == pytest.approx(1 / (1 + 10 ** (-200 / 400)))
    assert matrix[0, 1] + matrix[1, 0] == pytest.approx(1.0)
    assert matrix[0, 0] == pytest.approx(0.5)


def test_a_version_that_never_wins_stays_finite_and_is_flagged():
    battles = bt.Battles.from_rows([("good", "bad", 1.0, 40), ("mid", "bad", 1.0, 15), ("good", "mid", 1.0, 10)])

    ratings = bt.rate(battles, rounds=50)
    table = {row["model"]: row for row in ratings.table()}

    assert (
        np.all(np.isfinite(ratings.rating)) and np.all(np.isfinite(ratings.low)) and np.all(np.isfinite(ratings.high))
    )
    assert table["bad"]["never_won"] and not table["good"]["never_won"]
    assert table["good"]["never_lost"]
    assert table["bad"]["rating"] < table["mid"]["rating"] < table["good"]["rating"]
    assert table["bad"]["rank"] == 3


def test_all_ties_give_equal_ratings():
    battles = bt.Battles.from_rows([("a", "b", 0.5, 20), ("b", "c", 0.5, 20), ("c", "a", 0.5, 20)])
    ratings = bt.rate(battles, rounds=30)
    assert np.allclose(ratings.rating, 1000, atol=1e-6)
    assert ratings.rank.tolist() == [1, 1, 1]


def test_no_battles_gives_an_empty_table():
    ratings = bt.rate(bt.Battles.from_rows([]))
    assert ratings.table() == [] and ratings.win_matrix().shape == (0, 0)


def test_versions_never_compared_are_reported_as_separate_groups():
    battles = bt.Battles.from_rows([("a", "b", 1.0, 5), ("a", "b", 0.0, 3), ("c", "d", 1.0, 4), ("c", "d", 0.5, 2)])
    ratings = bt.rate(battles, rounds=10)
    assert not ratings.connected
    assert len({row["group"] for row in ratings.table()}) == 2


def test_sql_rows_map_sample_preferences_to_battles():
    battles = bt.battles_from_counts(
        [
            ("v1", "v2", "A", 3),
            ("v1", "v2", "B", 2),
            ("v2", "v1", "tie", 4),
            ("v1", "v2", "both_bad", 1),
            ("v1", "v2", "cant_judge", 9),
        ]
    )
    assert battles.total == 10
    assert sorted(zip(battles.outcome.tolist(), battles.weight.tolist())) == [
        (0.0, 2.0),
        (0.5, 1.0),
        (0.5, 4.0),
        (1.0, 3.0),
    ]


def test_twenty_versions_with_100_bootstrap_rounds_recover_the_true_order():
    # The benchmark's shape (timings live in docs/BENCHMARKS.md, not in the suite).
    rng = np.random.default_rng(2)
    true = np.linspace(-1.0, 1.0, 20)
    a = rng.integers(0, 20, 100_000)
    b = (a + rng.integers(1, 20, 100_000)) % 20
    wins = rng.random(100_000) < 1 / (1 + 10 ** (true[b] - true[a]))
    battles = bt.Battles.from_rows(
        (f"v{x:02d}", f"v{y:02d}", 1.0 if w else 0.0, 1) for x, y, w in zip(a, b, wins, strict=True)
    )

    ratings = bt.rate(battles, rounds=100)
    by_name = dict(zip(ratings.names, ratings.rating, strict=True))
    fitted = np.array([by_name[f"v{i:02d}"] for i in range(20)])

    assert np.all(np.diff(fitted) > 0)
    assert np.allclose(fitted - fitted.mean(), 400 * (true - true.mean()), atol=15)
    assert np.all(ratings.low <= ratings.rating) and np.all(ratings.rating <= ratings.high)
