"""How good a predictor is where a search needs it: error and, above all, ranking.

A search only compares subnets, so rank correlation (Kendall tau, Spearman) decides which
predictor to use; RMSE and MAPE say how far the predicted accuracies can be trusted as numbers.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from nas.predictors._arrays import check_training_data, split_indices
from nas.predictors.base import Predictor


class PredictorReport(BaseModel):
    """Scores of one predictor on held-out subnets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    predictor: str
    num_train: int
    num_test: int
    rmse: float
    mape: float
    """Mean absolute percentage error, in percent of the true value."""
    kendall_tau: float
    spearman: float


def rank_correlations(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho); 0.0 where undefined (a constant prediction ranks nothing)."""
    from scipy.stats import kendalltau, spearmanr

    if np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return 0.0, 0.0
    tau = float(kendalltau(y_true, y_pred).statistic)
    rho = float(spearmanr(y_true, y_pred).statistic)
    return (0.0 if np.isnan(tau) else tau), (0.0 if np.isnan(rho) else rho)


def score_predictions(
    y_true: np.ndarray, y_pred: np.ndarray, *, predictor: str, num_train: int
) -> PredictorReport:
    truth = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    error = pred - truth
    nonzero = np.abs(truth) > 1e-12
    mape = float(np.mean(np.abs(error[nonzero] / truth[nonzero])) * 100) if nonzero.any() else 0.0
    tau, rho = rank_correlations(truth, pred)
    return PredictorReport(
        predictor=predictor,
        num_train=num_train,
        num_test=len(truth),
        rmse=float(np.sqrt(np.mean(error**2))),
        mape=mape,
        kendall_tau=tau,
        spearman=rho,
    )


def holdout_report(
    predictor: Predictor,
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> PredictorReport:
    """Fit ``predictor`` (in place) on a random 80% and score it on the other 20%."""
    features, targets = check_training_data(x, y, min_samples=4)
    train, test = split_indices(len(targets), test_fraction, np.random.default_rng(seed))
    predictor.fit(features[train], targets[train])
    return score_predictions(
        targets[test],
        predictor.predict(features[test]),
        predictor=predictor.name,
        num_train=len(train),
    )
