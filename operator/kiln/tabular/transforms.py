"""The few pieces of a Kiln pipeline that scikit-learn does not provide.

They live in the ``kiln`` package, which both the trainer and the server images carry,
and the server trusts exactly these names when it loads an artifact
(``kiln.server.artifact.KNOWN_MODEL_TYPES``), not the ``kiln`` namespace as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from kiln.tabular.schema import DATE_PARTS

# Kiln's part names are pandas' older ones; pandas now spells these two with underscores.
_PANDAS_NAMES = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}


def date_parts(frame: Any, parts: Sequence[str]) -> np.ndarray:
    """ISO-8601 date text -> float parts per column (NaN when missing or unparseable)."""
    import pandas as pd

    unknown = [p for p in parts if p not in DATE_PARTS]
    if unknown:
        raise ValueError(f"unknown date part(s) {unknown}; choose from {list(DATE_PARTS)}")
    table = pd.DataFrame(frame)
    blocks: list[np.ndarray] = []
    for name in table.columns:
        stamps = pd.to_datetime(table[name], errors="coerce", format="ISO8601", utc=True)
        for part in parts:
            values = getattr(stamps.dt, _PANDAS_NAMES.get(part, part))
            blocks.append(np.asarray(values, dtype=np.float64))
    if not blocks:
        return np.empty((len(table), 0))
    return np.column_stack(blocks)


def date_part_names(transformer: Any, input_features: Sequence[str]) -> list[str]:
    """`feature_names_out` for the date FunctionTransformer: `<column>_<part>`."""
    parts = (transformer.kw_args or {}).get("parts", ())
    return [f"{name}_{part}" for name in input_features for part in parts]


class EncodedLabelClassifier(ClassifierMixin, BaseEstimator):
    """Fits a classifier on class indices 0..K-1 and answers with the original labels.

    XGBoost's scikit-learn classifier accepts only integer labels 0..K-1; this keeps the
    model's ``classes_`` (and so predict, metrics and the served labels) the user's own.
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> EncodedLabelClassifier:
        self.classes_, encoded = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(X, encoded)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        indices = np.asarray(self.estimator_.predict(X)).astype(np.intp).reshape(-1)
        return np.asarray(self.classes_.take(indices))

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return np.asarray(self.estimator_.predict_proba(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
