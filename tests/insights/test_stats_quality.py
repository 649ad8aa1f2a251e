"""Annotator quality figures and outlier flags, from per-annotator aggregates."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from insights.stats.quality import AnnotatorFigures, assess


def figures(name: str, **overrides) -> AnnotatorFigures:
    base = dict(
        annotator_id=hash(name) % 10_000,
        username=name,
        judgments=100,
        median_ms=40_000,
        timed=100,
        sided=80,
        chose_left=41,
        shared=100,
        agreed=75,
        gold_items=12,
        gold_correct=11,
        edits=10,
    )
    base.update(overrides)
    return AnnotatorFigures(**base)


def by_name(rows):
    return {row.figures.username: row for row in rows}


def test_rates_and_p_values_are_computed_from_the_counts():
    rows = by_name(assess([figures("alice", chose_left=50, sided=80), figures("bob")]))
    alice = rows["alice"]

    assert alice.left_share == pytest.approx(50 / 80)
    assert alice.left_p == pytest.approx(binomtest(50, 80).pvalue)
    assert alice.median_seconds == 40.0
    assert alice.agreement == 0.75
    assert alice.gold_accuracy == pytest.approx(11 / 12)
    assert alice.edit_rate == 0.10
    assert alice.flags == []


def test_a_left_clicker_is_flagged_for_position_bias():
    rows = by_name(assess([figures("lefty", chose_left=70, sided=80), figures("bob")]))
    assert rows["lefty"].flags == ["position bias"]
    assert rows["lefty"].left_p < 0.001


def test_a_few_left_choices_are_not_enough_to_flag():
    rows = by_name(assess([figures("new", sided=10, chose_left=10), figures("bob")]))
    assert "position bias" not in rows["new"].flags


def test_someone_much_faster_than_the_team_is_flagged():
    team = [figures(f"a{i}") for i in range(4)]
    rows = by_name(assess([*team, figures("speedy", median_ms=2_500)]))
    assert rows["speedy"].flags == ["too fast"]
    assert all(not rows[f"a{i}"].flags for i in range(4))


def test_low_agreement_with_the_majority_is_flagged_against_the_rest_of_the_team():
    team = [figures(f"a{i}", agreed=80) for i in range(4)]
    rows = by_name(assess([*team, figures("contrarian", agreed=45)]))

    contrarian = rows["contrarian"]
    assert contrarian.flags == ["low agreement"]
    assert contrarian.agreement_p == pytest.approx(binomtest(45, 100, (4 * 80) / 400, alternative="less").pvalue)


def test_poor_gold_accuracy_is_flagged():
    rows = by_name(assess([figures("careless", gold_items=20, gold_correct=10), figures("bob")]))
    assert rows["careless"].flags == ["gold"]


def test_missing_figures_give_none_not_errors():
    rows = assess(
        [
            figures(
                "imported",
                median_ms=None,
                timed=0,
                sided=0,
                chose_left=0,
                shared=0,
                agreed=0,
                gold_items=0,
                gold_correct=0,
            )
        ]
    )
    row = rows[0]
    assert (row.median_seconds, row.left_share, row.left_p, row.agreement, row.gold_accuracy) == (None,) * 5
    assert row.flags == []
    assert row.as_dict()["flags"] == []
