"""Accuracy predictors over arch encodings: ridge, gradient-boosted trees, an MLP and ``auto``.

Every predictor follows ``Predictor`` (``fit``/``predict`` on ``[N, D]`` batches from
``space.encode_batch``, JSON-ready state). ``holdout_report`` scores one on a held-out 20%
(RMSE, MAPE, Kendall tau, Spearman); ``nas.predictors.dataset`` builds the accuracy dataset
they learn from. Importing this package does not import torch or scikit-learn.
"""

from __future__ import annotations

from nas.predictors.auto import AutoPredictor
from nas.predictors.base import NotFittedError, Predictor
from nas.predictors.dataset import (
    AccuracyDataset,
    AccuracyRecord,
    SupernetAccuracy,
    measure_subnets,
    stratified_subnets,
)
from nas.predictors.gbt import GBTPredictor
from nas.predictors.metrics import (
    PredictorReport,
    holdout_report,
    rank_correlations,
    score_predictions,
)
from nas.predictors.mlp import MLPPredictor
from nas.predictors.registry import (
    PREDICTOR_NAMES,
    PredictorName,
    PredictorSpec,
    make_predictor,
    predictor_from_bytes,
    predictor_from_state,
    predictor_to_bytes,
)
from nas.predictors.ridge import RidgePredictor

__all__ = [
    "PREDICTOR_NAMES",
    "AccuracyDataset",
    "AccuracyRecord",
    "AutoPredictor",
    "GBTPredictor",
    "MLPPredictor",
    "NotFittedError",
    "Predictor",
    "PredictorName",
    "PredictorReport",
    "PredictorSpec",
    "RidgePredictor",
    "SupernetAccuracy",
    "holdout_report",
    "make_predictor",
    "measure_subnets",
    "predictor_from_bytes",
    "predictor_from_state",
    "predictor_to_bytes",
    "rank_correlations",
    "score_predictions",
    "stratified_subnets",
]
