"""The operator's table of estimator parameters is what the installed libraries and the
trainer's own check say (kiln.api.estimator_params, `make estimator-params`)."""

from __future__ import annotations

import pytest

from kiln.api.estimator_params import ESTIMATOR_PARAMS
from kiln.trainer import paramtable
from kiln.trainer.errors import TrainingError
from kiln.trainer.estimators import (
    ALLOWED_ESTIMATORS,
    prepare_estimator,
    resolve_estimator_class,
)

pytestmark = pytest.mark.unit


def test_the_committed_table_is_what_the_installed_libraries_generate() -> None:
    committed = paramtable.default_output_file().read_text(encoding="utf-8")
    assert committed == paramtable.render(), (
        "operator/kiln/api/estimator_params.py is stale (a library upgrade added or removed "
        "a parameter): run `make estimator-params`"
    )


def test_the_table_covers_every_allow_listed_estimator() -> None:
    assert set(ESTIMATOR_PARAMS) == ALLOWED_ESTIMATORS


@pytest.mark.parametrize("path", ["xgboost.XGBClassifier", "xgboost.XGBRegressor"])
def test_xgboosts_open_constructor_is_closed_by_the_trainer_so_the_table_is_exhaustive(
    path: str,
) -> None:
    """XGBoost's wrappers take any **kwargs, so the table could not be exhaustive for them
    if the trainer let such a name through; it does not."""
    cls = resolve_estimator_class(path)
    assert "not_a_parameter" in cls(not_a_parameter=1).get_params()
    assert "not_a_parameter" not in ESTIMATOR_PARAMS[path]
    with pytest.raises(TrainingError, match="unknown parameter 'not_a_parameter'"):
        prepare_estimator(path, {"not_a_parameter": 1}, seed=0)
