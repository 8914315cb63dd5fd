"""Confidence intervals and paired comparisons on cases whose answers are known."""

from __future__ import annotations

import pytest

from ctr_plugin.reporting.stats import BETTER, TOO_FEW, WITHIN_NOISE, WORSE, paired_comparison, t_interval


def test_t_interval_matches_the_textbook_paired_sleep_data():
    # Student's (1908) sleep data, extra hours of sleep of drug 2 minus drug 1 for ten patients;
    # R's t.test(extra ~ group, data = sleep, paired = TRUE) gives mean 1.58, 95 % CI 0.7001142 to 2.4598858.
    d = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4]
    e = t_interval(d)
    assert e.n == 10 and e.mean == pytest.approx(1.58)
    assert e.std == pytest.approx(1.229995, abs=1e-6)
    assert (e.ci_low, e.ci_high) == pytest.approx((0.7001142, 2.4598858), abs=1e-6)


def test_t_interval_of_one_to_five_uses_t_with_four_degrees_of_freedom():
    e = t_interval([1, 2, 3, 4, 5])  # s = sqrt(2.5), t_{4, 0.975} = 2.776445
    assert e.half_width == pytest.approx(2.776445 * 2.5**0.5 / 5**0.5, abs=1e-5)
    assert t_interval([1, 2, 3, 4, 5], confidence=0.90).half_width < e.half_width


def test_constant_values_give_a_zero_width_interval_and_one_value_gives_none():
    e = t_interval([3.0, 3.0, 3.0])
    assert (e.mean, e.std, e.ci_low, e.ci_high) == (3.0, 0.0, 3.0, 3.0)
    single = t_interval([7.0])
    assert (single.mean, single.std, single.ci_low, single.ci_high) == (7.0, 0.0, None, None)


def test_paired_comparison_matches_runs_by_key_and_counts_wins_losses_ties():
    ctr = {(0, 0): 80.0, (1, 0): 85.0, (2, 0): 90.0, (3, 0): 70.0, (4, 0): 99.0}
    other = {(0, 0): 78.0, (1, 0): 85.0, (2, 0): 91.0, (3, 0): 65.0}  # order 4 was not run: not matched
    c = paired_comparison("ctr", ctr, "other", other)
    assert (c.wins, c.losses, c.ties) == (2, 1, 1) and c.difference.n == 4
    assert c.difference.mean == pytest.approx((2 + 0 - 1 + 5) / 4)
    assert c.verdict == WITHIN_NOISE and c.difference.ci_low < 0 < c.difference.ci_high


def test_a_constant_difference_is_a_zero_width_interval_and_a_clear_verdict():
    base = {(k, 0): 70.0 + 5 * k for k in range(3)}
    better = paired_comparison("ctr", {k: v + 2 for k, v in base.items()}, "m", base)
    assert better.verdict == BETTER and (better.difference.ci_low, better.difference.ci_high) == pytest.approx(
        (2.0, 2.0)
    )
    assert (better.wins, better.losses, better.ties) == (3, 0, 0)
    worse = paired_comparison("ctr", {k: v - 2 for k, v in base.items()}, "m", base)
    assert worse.verdict == WORSE and worse.losses == 3
    same = paired_comparison("ctr", base, "m", dict(base))
    assert same.verdict == WITHIN_NOISE and same.ties == 3 and same.difference.half_width == 0.0


def test_pairing_removes_the_orders_difficulty_that_an_unpaired_view_would_call_noise():
    # Orders differ by 20 points, the reference is 1 point ahead on every order but one (0.5).
    other = {0: 60.0, 1: 80.0, 2: 70.0, 3: 90.0}
    ref = {0: 61.0, 1: 81.0, 2: 70.5, 3: 91.0}
    assert paired_comparison("ctr", ref, "m", other).verdict == BETTER
    separate = t_interval(list(ref.values())), t_interval(list(other.values()))
    assert separate[0].ci_low < separate[1].mean  # the per-method intervals overlap widely


def test_lower_is_better_flips_the_sign_so_positive_favours_the_reference():
    c = paired_comparison(
        "ctr", {0: 1.0, 1: 2.0}, "m", {0: 5.0, 1: 6.0}, metric="forgetting_rate", higher_is_better=False
    )
    assert c.difference.mean == 4.0 and c.verdict == BETTER and c.wins == 2


def test_one_matched_run_is_too_few_for_a_verdict_and_none_is_no_comparison():
    assert paired_comparison("ctr", {0: 80.0}, "m", {0: 70.0}).verdict == TOO_FEW
    assert paired_comparison("ctr", {0: 80.0}, "m", {1: 70.0}) is None
