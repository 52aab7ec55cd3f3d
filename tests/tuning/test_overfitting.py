"""The deflated Sharpe ratio and PBO (CSCV) against values worked out by hand on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfactory.tuning.overfitting import deflated_sharpe, expected_max_sharpe, moments, pbo_cscv, period_returns, sharpe


def test_deflated_sharpe_by_hand() -> None:
    # returns 1, 2, -1, 3, 0 (%): mean 0.01; squared deviations 0, 1, 4, 4, 1 (1e-4) -> sample variance 2.5e-4
    returns = np.array([0.01, 0.02, -0.01, 0.03, 0.0])
    sr = 0.01 / math.sqrt(2.5e-4)  # 0.632456
    assert sharpe(returns) == pytest.approx(sr)
    # population moments: m2 = 2e-4, m3 = (1 - 8 + 8 - 1)e-6 / 5 = 0, m4 = (1 + 16 + 16 + 1)e-8 / 5 = 6.8e-8
    skew, kurt = moments(returns)
    assert skew == pytest.approx(0.0, abs=1e-12) and kurt == pytest.approx(6.8e-8 / 4e-8)  # 1.7
    # three trials with Sharpe ratios 0.5, 0.3, 0.1: sample variance 0.04, sqrt 0.2; N = 3:
    # Z(1 - 1/3) = 0.430727, Z(1 - 1/(3e)) = 1.161957
    sr0 = 0.2 * ((1 - 0.5772156649) * 0.4307273 + 0.5772156649 * 1.1619569)  # 0.170561
    assert expected_max_sharpe(3, 0.04) == pytest.approx(sr0, abs=1e-6)
    # (SR - SR0) sqrt(T - 1) / sqrt(1 - 0 * SR + (1.7 - 1) / 4 * SR^2) = 0.893061; Phi(0.893061) = 0.814088
    z = (sr - sr0) * 2 / math.sqrt(1 + 0.7 / 4 * sr**2)
    assert z == pytest.approx(0.893061, abs=1e-5)
    result = deflated_sharpe(returns, [0.5, 0.3, 0.1])
    assert result["dsr"] == pytest.approx(0.814088, abs=1e-5)
    assert result["expected_max_sharpe"] == pytest.approx(sr0, abs=1e-6)
    assert (result["n_trials"], result["n_periods"], result["variance"]) == (3, 5, pytest.approx(0.04))
    assert "SR0" in result["formula"]


def test_deflated_sharpe_needs_two_trials() -> None:
    result = deflated_sharpe(np.array([0.01, 0.02, -0.01]), [0.4])
    assert result["dsr"] is None and "at least 2 trials" in result["reason"]


def test_pbo_every_in_sample_winner_loses_out_of_sample() -> None:
    # S = 2 blocks of 2 periods. Blocks (0 | 1): A earns 1 then -1, B earns 0 throughout.
    # IS block 0 picks A (1 > 0), OOS A = -1 < 0: rank 1 of 2, w = 1/3, logit ln(1/2) < 0.
    # IS block 1 picks B (0 > -1), OOS B = 0 < 1: rank 1, w = 1/3. PBO = 2/2.
    matrix = np.array([[1, 0], [1, 0], [-1, 0], [-1, 0]], dtype=float)
    result = pbo_cscv(matrix, n_blocks=2, statistic="mean")
    assert result["pbo"] == 1.0 and result["logits"] == [pytest.approx(math.log(0.5))] * 2


def test_pbo_six_combinations_by_hand() -> None:
    # S = 4 blocks of one period, trials A, B, C; C(4, 2) = 6 in-sample choices, mean return ranks:
    #   IS {0,1}: A (2)  OOS {2,3}: A -2, B 0, C 0.1 -> A rank 1, w 1/4, logit ln(1/3)
    #   IS {0,2}: B (1)  OOS {1,3}: A 0, B -1, C 0.1 -> B rank 1, logit ln(1/3)
    #   IS {0,3}: C      OOS {1,2}: A 0, B 0, C 0.1  -> C rank 3, logit ln 3
    #   IS {1,2}: C      OOS {0,3}: A 0, B 0, C 0.1  -> C rank 3, logit ln 3
    #   IS {1,3}: C      OOS {0,2}: A 0, B 1, C 0.1  -> C rank 2, w 1/2, logit 0
    #   IS {2,3}: C      OOS {0,1}: A 2, B 0, C 0.1  -> C rank 2, logit 0
    # logits <= 0: 4 of 6.
    a, b, c = [2, 2, -2, -2], [1, -1, 1, -1], [0.1] * 4
    result = pbo_cscv(np.array([a, b, c], dtype=float).T, n_blocks=4, statistic="mean")
    assert result["n_combinations"] == 6 and result["pbo"] == pytest.approx(4 / 6)
    expected = [math.log(1 / 3), math.log(1 / 3), math.log(3), math.log(3), 0.0, 0.0]
    assert result["logits"] == pytest.approx(expected, abs=1e-6)


def test_pbo_zero_when_the_winner_always_wins() -> None:
    # Sharpe ratios per block of 2: A (1, 2) about 2.1, B (1, -1) 0, C (-2, -1) about -2.1 in both blocks
    matrix = np.array([[1, 1, -2], [2, -1, -1], [1, 1, -2], [2, -1, -1]], dtype=float)
    result = pbo_cscv(matrix, n_blocks=2)
    assert result["pbo"] == 0.0 and result["logits"] == [pytest.approx(math.log(3))] * 2


def test_pbo_refuses_odd_blocks_and_one_trial() -> None:
    with pytest.raises(ValueError, match="even number of blocks"):
        pbo_cscv(np.zeros((8, 3)), n_blocks=3)
    with pytest.raises(ValueError, match="at least 2 trials"):
        pbo_cscv(np.zeros((8, 1)))


def test_period_returns_are_the_signal_per_timestamp_every_horizon() -> None:
    times = np.array(["2024-01-01T00:00", "2024-01-01T00:00", "2024-01-01T00:01", "2024-01-01T00:02"],
                     dtype="datetime64[ns]")
    up, down = [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]
    probs = np.array([up, down, up, up])
    fwd = np.array([0.02, 0.04, 0.01, -0.03])
    stamps, returns = period_returns(probs, fwd, times, horizon=2)
    # t0: mean(+0.02, -0.04) = -0.01; t1 skipped (horizon 2); t2: -0.03
    assert returns == pytest.approx([-0.01, -0.03]) and list(stamps) == list(times[[0, 3]].astype(np.int64))
