"""Student-t quantiles and mean ± t-intervals against published tables and hand computation."""

import math

import pytest

from selm.eval.intervals import (
    mean_interval,
    student_t_quantile,
    student_t_two_sided_mass,
)

# t_{0.975, df} from the standard two-sided 95 % table (e.g. NIST/SEMATECH e-Handbook, section 1.3.6.7.2).
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 9: 2.262, 10: 2.228, 20: 2.086,
             30: 2.042, 100: 1.984}


@pytest.mark.parametrize(("df", "expected"), sorted(TABLE_975.items()))
def test_quantile_matches_the_table(df: int, expected: float) -> None:
    assert student_t_quantile(0.95, df) == pytest.approx(expected, abs=6e-4)


def test_mass_has_known_closed_forms() -> None:
    # df 1 is the Cauchy: P(|T| <= 1) = 1/2; df 2: P(|T| <= t) = t / sqrt(2 + t^2).
    assert student_t_two_sided_mass(1.0, 1) == pytest.approx(0.5, abs=1e-14)
    assert student_t_two_sided_mass(3.0, 2) == pytest.approx(3 / math.sqrt(11), abs=1e-14)
    # 99 % quantiles from the same table.
    assert student_t_quantile(0.99, 4) == pytest.approx(4.604, abs=6e-4)
    assert student_t_quantile(0.99, 7) == pytest.approx(3.499, abs=6e-4)


def test_mean_interval_by_hand() -> None:
    values = [0.50, 0.61, 0.55, 0.58, 0.47]
    # mean 0.542; deviations -0.042 0.068 0.008 0.038 -0.072; squares sum 0.01308; s^2 = 0.00327
    m = mean_interval(values)
    assert m.mean == pytest.approx(0.542, abs=1e-12)
    assert m.half_width == pytest.approx(2.7764451 * math.sqrt(0.00327 / 5), abs=1e-9)
    assert m.n == 5
    assert m.format() == f"0.542 ± {m.half_width:.3f}"


def test_single_value_and_empty() -> None:
    m = mean_interval([0.3])
    assert m.mean == 0.3 and math.isnan(m.half_width) and m.format(2) == "0.30"
    with pytest.raises(ValueError, match="no values"):
        mean_interval([])
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_quantile(0.95, 0)
