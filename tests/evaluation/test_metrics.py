"""Evaluation metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss as sk_log_loss, precision_score, recall_score

from mlfactory.evaluation.calibration import reliability
from mlfactory.evaluation.classification import classification_report, confusion_matrix
from mlfactory.evaluation.trading import information_coefficient, max_drawdown, trading_report
from mlfactory.metrics import classification_metrics

# five samples, hand-checked: true  = down, down, neutral, up, up
#                             pred  = down, up,   neutral, up, neutral
Y = np.array([0, 0, 1, 2, 2])
P = np.array(
    [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]
)


def test_confusion_matrix_by_hand():
    assert confusion_matrix(Y, P.argmax(1)).tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 1]]


def test_classification_report_by_hand():
    report = classification_report(P, Y)
    assert report["accuracy"] == pytest.approx(3 / 5)
    # recalls: down 1/2, neutral 1/1, up 1/2
    assert report["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # precisions: down 1/1, neutral 1/2, up 1/2
    assert report["per_class"]["down"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert report["per_class"]["neutral"]["precision"] == pytest.approx(0.5)
    f1 = [2 * 1 * 0.5 / 1.5, 2 * 0.5 * 1 / 1.5, 0.5]
    assert report["f1_macro"] == pytest.approx(np.mean(f1))
    assert report["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.2, 0.8, 0.6, 0.3])))
    # direction: P(up) - P(down) is -0.6, 0.3 on the downs and 0.5, 0.1 on the ups; 3 of 4 pairs ordered
    assert report["direction_auc"] == pytest.approx(0.75)
    assert classification_report(P[2:], Y[2:])["direction_auc"] is None  # no down sample left


def test_classification_report_matches_scikit_learn_and_torchmetrics():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    probs = rng.dirichlet(np.ones(3), 500)
    w = rng.uniform(0.5, 2.0, 500)
    report = classification_report(probs, y, w)
    pred = probs.argmax(1)
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert report["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert report["log_loss"] == pytest.approx(sk_log_loss(y, probs, sample_weight=w))
    precision = precision_score(y, pred, average=None)
    recall = recall_score(y, pred, average=None)
    for i, name in enumerate(("down", "neutral", "up")):
        assert report["per_class"][name]["precision"] == pytest.approx(precision[i])
        assert report["per_class"][name]["recall"] == pytest.approx(recall[i])
    # the metrics logged during training agree with the run record's
    logged = classification_metrics()(torch.tensor(probs), torch.tensor(y))
    assert float(logged["balanced_accuracy"]) == pytest.approx(report["balanced_accuracy"], rel=1e-5)
    assert float(logged["f1_macro"]) == pytest.approx(report["f1_macro"], rel=1e-5)


def test_expected_calibration_error_by_hand():
    # bin [0.6, 0.7): confidences 0.6 and 0.6 -> one right, one wrong: |0.5 - 0.6| = 0.1
    # bin [0.9, 1.0]: confidence 0.9, right: |1 - 0.9| = 0.1
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.05, 0.05, 0.9]])
    y = np.array([0, 1, 2])
    report = reliability(probs, y, n_bins=10)
    assert report["expected_calibration_error"] == pytest.approx(2 / 3 * 0.1 + 1 / 3 * 0.1)
    assert report["bin_count"][6] == 2 and report["bin_count"][9] == 1
    assert math.isnan(report["bin_accuracy"][0])


def test_max_drawdown_by_hand():
    # equity 0, 1, 3, 2, 0.5, 1.5 -> peak 3, trough 0.5
    assert max_drawdown(np.array([1.0, 2.0, -1.0, -1.5, 1.0])) == pytest.approx(2.5)
    assert max_drawdown(np.array([0.1, 0.1])) == 0.0


def test_trading_report_by_hand():
    times = pd.date_range("2024-01-01", periods=4, freq="1min").to_numpy()
    # predictions: up, down, neutral, up; forward returns: +1%, +2%, -5%, -1%
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    fwd = np.array([0.01, 0.02, -0.05, -0.01])
    report = trading_report(probs, fwd, times, horizon=1)
    assert report["active_fraction"] == pytest.approx(0.75)
    assert report["hit_rate"] == pytest.approx(1 / 3)  # only the first call was right
    strategy = np.array([0.01, -0.02, 0.0, -0.01])
    assert report["mean_return"] == pytest.approx(strategy.mean())
    expected_sharpe = strategy.mean() / strategy.std(ddof=1) * math.sqrt(365.25 * 24 * 60)
    assert report["sharpe_annualised"] == pytest.approx(expected_sharpe)
    assert report["max_drawdown"] == pytest.approx(0.03)  # from +0.01 down to -0.02


def test_sharpe_uses_non_overlapping_periods():
    times = pd.date_range("2024-01-01", periods=6, freq="1min").to_numpy()
    probs = np.tile([0.0, 0.0, 1.0], (6, 1))  # always long
    fwd = np.array([0.03, 99.0, 0.01, 99.0, 0.02, 99.0])  # odd periods overlap with horizon 2
    report = trading_report(probs, fwd, times, horizon=2)
    spaced = np.array([0.03, 0.01, 0.02])
    assert report["sharpe_annualised"] == pytest.approx(spaced.mean() / spaced.std(ddof=1) * math.sqrt(525960 / 2))


def test_information_coefficient_per_day():
    day1 = pd.date_range("2024-01-01 10:00", periods=4, freq="1h")
    day2 = pd.date_range("2024-01-02 10:00", periods=4, freq="1h")
    times = np.concatenate([day1, day2]).astype("datetime64[ns]")
    score = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0])
    returns = np.array([0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.1, 0.2])  # day 1 rank-perfect; day 2 rho = -0.8
    ic = information_coefficient(score, returns, times)
    assert ic["ic_periods"] == 2
    assert ic["ic_mean"] == pytest.approx((1.0 - 0.8) / 2)
    assert ic["ic_std"] == pytest.approx(np.std([1.0, -0.8], ddof=1))
    assert ic["icir"] == pytest.approx(ic["ic_mean"] / ic["ic_std"])
