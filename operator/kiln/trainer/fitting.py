"""Split, fit and predict: the only phase that runs the user's estimator."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from kiln.trainer.dataset import LoadedDataset
from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.metrics import Predictions


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    groups_test: np.ndarray | None
    stratified: bool


def split_dataset(data: LoadedDataset, test_size: float, seed: int, stratify: bool) -> Split:
    x = data.frame[data.features]
    y = data.frame[data.target]
    groups = data.frame[data.sensitive_column] if data.sensitive_column else None
    arrays: list[Any] = [x, y] if groups is None else [x, y, groups]
    try:
        parts = _split(arrays, test_size, seed, y if stratify else None)
        stratified = stratify
    except ValueError as exc:
        if not stratify:
            raise TrainingError(Reason.INVALID_DATASET, f"cannot split the dataset: {exc}") from exc
        # Too few rows of some class to stratify: a plain split is still reproducible.
        parts = _split(arrays, test_size, seed, None)
        stratified = False
    x_train, x_test, y_train, y_test = parts[:4]
    groups_test = np.asarray(parts[5]) if groups is not None else None
    if len(x_train) == 0 or len(x_test) == 0:
        raise TrainingError(Reason.INVALID_DATASET, "dataset too small to split into train/test")
    return Split(x_train, x_test, y_train, y_test, groups_test, stratified)


def _split(arrays: list[Any], test_size: float, seed: int, stratify: Any) -> list[Any]:
    return list(
        train_test_split(*arrays, test_size=test_size, random_state=seed, stratify=stratify)
    )


def fit(estimator: Any, split: Split, name: str) -> tuple[Any, list[str]]:
    """Fit in place; returns the estimator and the warnings it raised (as one-liners).

    ``name`` is the user's estimator class, for messages (``estimator`` is the pipeline).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator.fit(split.x_train, split.y_train)
        except Exception as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise TrainingError(Reason.TRAINING_FAILED, f"{name}.fit failed: {message}") from exc
    return estimator, sorted({" ".join(str(w.message).split()) for w in caught})


def predict(estimator: Any, split: Split, is_classifier: bool) -> Predictions:
    y_pred = np.asarray(estimator.predict(split.x_test))
    proba = None
    decision = None
    classes: list[Any] = []
    if is_classifier:
        classes = list(np.asarray(estimator.classes_).tolist())
        if hasattr(estimator, "predict_proba"):
            try:
                proba = np.asarray(estimator.predict_proba(split.x_test))
            except AttributeError:
                proba = None  # e.g. SVC(probability=False) exposes the method but refuses
        if proba is None and hasattr(estimator, "decision_function"):
            decision = np.asarray(estimator.decision_function(split.x_test))
    return Predictions(
        y_true=np.asarray(split.y_test),
        y_pred=y_pred,
        proba=proba,
        decision=decision,
        classes=classes,
    )
