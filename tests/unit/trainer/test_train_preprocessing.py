"""Type inference, every preparation option, and the fitted pipeline's behaviour."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from kiln.api.preprocessing import PreprocessingSpec
from kiln.tabular.schema import TabularSchema, schema_of
from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.preprocessing import (
    PreparationPlan,
    accepts_missing_values,
    attach_schema,
    build_pipeline,
    canonical_features,
    check_missing_values_accepted,
    infer_kind,
    plan_preparation,
    with_categories,
)

pytestmark = pytest.mark.unit

LINEAR = "sklearn.linear_model.LogisticRegression"
FOREST = "sklearn.ensemble.RandomForestClassifier"


def table() -> pd.DataFrame:
    """Penguin-like: text with gaps, numbers with gaps, a bool with gaps, a numeric code."""
    return pd.DataFrame(
        {
            "island": ["Biscoe", "Dream", None, "Torgersen", "Biscoe", "Dream"] * 5,
            "mass": [3750.0, None, 3250.0, 4100.0, 5000.0, 3900.0] * 5,
            "ringed": [True, False, None, True, False, True] * 5,
            "grade": [1, 2, 3, 1, 2, 3] * 5,
            "y": ["a", "b", "a", "b", "a", "b"] * 5,
        }
    )


def plan(frame: pd.DataFrame, estimator: str = LINEAR, **spec: Any) -> PreparationPlan:
    features = [c for c in frame.columns if c != "y"]
    return plan_preparation(
        frame,
        features,
        estimator,
        PreprocessingSpec.model_validate(spec) if spec else None,
        protected=["y"],
    )


def columns(p: PreparationPlan) -> dict[str, Any]:
    return {c.name: c for c in p.columns}


def error(frame: pd.DataFrame, estimator: str = LINEAR, **spec: Any) -> TrainingError:
    with pytest.raises(TrainingError) as info:
        plan(frame, estimator, **spec)
    return info.value


# --- inference ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1.5, 2.0, None], "numeric"),
        ([1, 2, 3], "numeric"),
        ([True, False, True], "boolean"),
        ([True, None, False], "boolean"),  # a CSV bool column with empty cells is object
        (["a", "b", None], "categorical"),
        (pd.to_datetime(["2024-01-01", "2024-02-01", None]), "datetime"),
        ([None, None, None], None),
    ],
)
def test_column_type_is_inferred_from_the_values(values: Any, kind: str | None) -> None:
    assert infer_kind(pd.Series(values)) == kind


def test_defaults_impute_everything_and_encode_text_for_the_estimator_family() -> None:
    linear = columns(plan(table(), LINEAR))
    assert (linear["island"].kind, linear["island"].encoder) == ("categorical", "onehot")
    assert linear["island"].impute == "most_frequent" and linear["island"].nullable
    assert (linear["mass"].kind, linear["mass"].impute, linear["mass"].scaling) == (
        "numeric",
        "median",
        "standard",
    )
    assert (linear["ringed"].kind, linear["ringed"].impute) == ("boolean", "most_frequent")
    assert linear["grade"].kind == "numeric" and not linear["grade"].nullable
    tree = columns(plan(table(), FOREST))
    # Trees split on one ordinal column per category set and do not need scaling.
    assert tree["island"].encoder == "ordinal"
    assert tree["mass"].scaling is None


def test_identifier_like_and_empty_columns_are_left_out_with_a_warning() -> None:
    frame = pd.concat([table()] * 3, ignore_index=True)
    frame["name"] = [f"penguin {i}" for i in range(len(frame))]
    frame["empty"] = None
    result = plan(frame)
    assert result.dropped == ("name", "empty")
    assert any("'name'" in w and "identifier" in w for w in result.warnings)
    assert any("'empty'" in w for w in result.warnings)
    # Declared categorical, the identifier is kept.
    kept = plan(frame, columns=[{"name": "name", "type": "categorical"}])
    assert "name" in columns(kept)


# --- overrides -----------------------------------------------------------------------------


def test_a_column_can_be_dropped() -> None:
    result = plan(table(), columns=[{"name": "ringed", "drop": True}])
    assert "ringed" not in columns(result) and result.dropped == ("ringed",)


def test_a_numeric_code_can_be_categorical() -> None:
    grade = columns(plan(table(), columns=[{"name": "grade", "type": "categorical"}]))["grade"]
    assert (grade.kind, grade.encoder) == ("categorical", "onehot")
    fitted = with_categories(
        plan(table(), columns=[{"name": "grade", "type": "categorical"}]),
        canonical_features(table(), plan(table())),
    )
    assert columns(fitted)["grade"].categories == ("1", "2", "3")


def test_column_settings_win_over_type_wide_ones() -> None:
    result = columns(
        plan(
            table(),
            numeric={"impute": "mean", "scaling": "minmax"},
            categorical={"encoder": "ordinal", "impute": "constant", "fillValue": "unknown"},
            columns=[
                {"name": "mass", "impute": "constant", "fillValue": "0", "scaling": "none"},
                {"name": "island", "encoder": "onehot", "maxCategories": 2},
            ],
        )
    )
    assert (result["mass"].impute, result["mass"].fill_value, result["mass"].scaling) == (
        "constant",
        "0",
        None,
    )
    assert (result["grade"].impute, result["grade"].scaling) == ("mean", "minmax")
    assert (result["island"].encoder, result["island"].impute) == ("onehot", "constant")
    assert result["island"].fill_value == "unknown"


def test_max_categories_groups_rare_categories_into_one_column() -> None:
    frame = table()
    p = with_categories(
        plan(frame, columns=[{"name": "island", "maxCategories": 2}]),
        canonical_features(frame, plan(frame)),
    )
    model = build_pipeline(p, LogisticRegression()).fit(canonical_features(frame, p), frame.y)
    encoder = model.named_steps["prepare"].named_transformers_["col0"].named_steps["encode"]
    assert len(encoder.get_feature_names_out()) == 2


def test_dates_are_parsed_into_parts() -> None:
    frame = pd.DataFrame(
        {"when": ["2024-01-31", "2023-07-04T10:30:00", None, "2022-12-25"] * 5, "y": [0, 1] * 10}
    )
    p = plan(frame, columns=[{"name": "when", "type": "datetime", "dateParts": ["year", "month"]}])
    model = build_pipeline(p, LogisticRegression())
    x = canonical_features(frame, p)
    model.fit(x, frame.y)
    prepared = model.named_steps["prepare"].transform(x)
    assert prepared.shape == (20, 2)
    # Scaled (a linear model), so compare the unscaled parts through the parse step.
    parse = model.named_steps["prepare"].named_transformers_["col0"].named_steps["parse"]
    parts = parse.transform(x[["when"]])
    np.testing.assert_array_equal(parts[:4, 0], [2024, 2023, np.nan, 2022])
    np.testing.assert_array_equal(parts[:4, 1], [1, 7, np.nan, 12])


def test_duplicate_rows_option_is_read() -> None:
    assert PreprocessingSpec.model_validate({"dropDuplicateRows": True}).drop_duplicate_rows


# --- errors naming the column --------------------------------------------------------------


def test_override_of_a_column_the_table_lacks_is_an_invalid_spec() -> None:
    failure = error(table(), columns=[{"name": "wings", "drop": True}])
    assert failure.reason is Reason.INVALID_SPEC and "wings" in failure.message


def test_override_of_the_target_is_an_invalid_spec() -> None:
    failure = error(table(), columns=[{"name": "y", "type": "categorical"}])
    assert failure.reason is Reason.INVALID_SPEC and "'y'" in failure.message


def test_override_of_a_column_outside_features_is_an_invalid_spec() -> None:
    with pytest.raises(TrainingError) as info:
        plan_preparation(
            table(),
            ["mass"],
            LINEAR,
            PreprocessingSpec.model_validate({"columns": [{"name": "grade", "drop": True}]}),
        )
    assert info.value.reason is Reason.INVALID_SPEC and "grade" in info.value.message


@pytest.mark.parametrize("setting", [{"impute": "mean"}, {"scaling": "standard"}])
def test_number_settings_on_a_text_column_are_an_invalid_spec(setting: dict[str, str]) -> None:
    failure = error(table(), columns=[{"name": "island", **setting}])
    assert failure.reason is Reason.INVALID_SPEC
    assert "island" in failure.message and "type: numeric" in failure.message


def test_text_declared_numeric_fails_naming_the_column_and_value() -> None:
    frame = table()
    frame["code"] = ["7", "8", "x9", "7", "8", "7"] * 5
    failure = error(frame, columns=[{"name": "code", "type": "numeric"}])
    assert failure.reason is Reason.INVALID_DATASET
    assert "'code'" in failure.message and "'x9'" in failure.message


def test_numeric_text_declared_numeric_is_parsed() -> None:
    frame = table()
    frame["code"] = ["7", "8", "9.5", None, "8", "7"] * 5
    p = plan(frame, columns=[{"name": "code", "type": "numeric"}])
    values = canonical_features(frame, p)["code"]
    assert values.dtype == np.float64 and values.tolist()[:3] == [7.0, 8.0, 9.5]


def test_non_boolean_values_declared_boolean_fail() -> None:
    failure = error(table(), columns=[{"name": "grade", "type": "boolean"}])
    assert failure.reason is Reason.INVALID_DATASET and "'grade'" in failure.message


def test_unparseable_date_fails_naming_the_column() -> None:
    failure = error(table(), columns=[{"name": "island", "type": "datetime"}])
    assert failure.reason is Reason.INVALID_DATASET and "'island'" in failure.message


def test_non_numeric_fill_value_for_a_number_column_is_an_invalid_spec() -> None:
    failure = error(table(), columns=[{"name": "mass", "impute": "constant", "fillValue": "heavy"}])
    assert failure.reason is Reason.INVALID_SPEC and "'mass'" in failure.message


def test_nothing_left_to_train_on_is_an_invalid_dataset() -> None:
    frame = table()[["mass", "y"]]
    failure = error(frame, columns=[{"name": "mass", "drop": True}])
    assert failure.reason is Reason.INVALID_DATASET


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"numeric": {"impute": "none"}}, "spec.preprocessing.numeric"),
        ({"columns": [{"name": "mass", "impute": "none"}]}, "spec.preprocessing.columns[mass]"),
    ],
)
def test_kept_missing_values_for_an_estimator_refusing_nan_are_an_invalid_spec(
    settings: dict[str, Any], field: str
) -> None:
    frame = table()
    p = plan(frame, **settings)
    with pytest.raises(TrainingError) as info:
        check_missing_values_accepted(
            p, PreprocessingSpec.model_validate(settings), LogisticRegression()
        )
    failure = info.value
    assert failure.reason is Reason.INVALID_SPEC
    assert failure.message.startswith(f"{field}: impute: none")
    assert "'mass'" in failure.message
    assert "LogisticRegression does not accept missing values" in failure.message


def test_kept_missing_values_are_refused_by_the_estimators_own_tag() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    frame = table()
    settings = {"columns": [{"name": "mass", "impute": "none"}]}
    p = plan(frame, FOREST, **settings)
    with pytest.raises(TrainingError) as info:
        check_missing_values_accepted(
            p, PreprocessingSpec.model_validate(settings), GradientBoostingClassifier()
        )
    assert "GradientBoostingClassifier does not accept" in info.value.message


def test_kept_missing_values_without_any_gap_are_accepted_by_any_estimator() -> None:
    frame = table()
    frame["mass"] = frame["mass"].fillna(4000.0)
    settings = {"columns": [{"name": "mass", "impute": "none"}]}
    p = plan(frame, **settings)
    check_missing_values_accepted(
        p, PreprocessingSpec.model_validate(settings), LogisticRegression()
    )


def _nan_taking_estimators() -> list[Any]:
    import lightgbm
    import xgboost
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier

    return [
        HistGradientBoostingClassifier(max_iter=5),
        RandomForestClassifier(n_estimators=3),
        ExtraTreesClassifier(n_estimators=3),
        DecisionTreeClassifier(),
        xgboost.XGBClassifier(n_estimators=3),
        lightgbm.LGBMClassifier(n_estimators=3, verbose=-1),
    ]


@pytest.mark.parametrize("estimator", _nan_taking_estimators(), ids=lambda e: type(e).__name__)
def test_estimators_that_take_nan_keep_training_with_kept_missing_values(estimator: Any) -> None:
    frame = table()
    settings = {"numeric": {"impute": "none"}}
    p = plan(frame, FOREST, **settings)
    assert accepts_missing_values(estimator)
    check_missing_values_accepted(p, PreprocessingSpec.model_validate(settings), estimator)
    p = with_categories(p, canonical_features(frame, p))
    prepared = canonical_features(frame, p)
    assert prepared["mass"].isna().any()
    target = (frame.y == "b").astype(int)  # XGBoost takes only 0..K-1
    model = build_pipeline(p, estimator).fit(prepared, target)
    assert set(model.predict(prepared)) <= {0, 1}


# --- the fitted pipeline -------------------------------------------------------------------


def fitted(estimator: Any, estimator_path: str, frame: pd.DataFrame | None = None) -> Any:
    frame = table() if frame is None else frame
    p = with_categories(plan(frame, estimator_path), canonical_features(frame, plan(frame)))
    model = build_pipeline(p, estimator).fit(canonical_features(frame, p), frame.y)
    attach_schema(model, p.schema())
    return model


def serving_rows(**values: list[Any]) -> pd.DataFrame:
    from kiln.tabular.coerce import canonical_frame

    schema = TabularSchema.from_json(fitted(LogisticRegression(), LINEAR).kiln_input_schema_)
    return canonical_frame(schema, values)


@pytest.mark.parametrize(
    ("estimator", "path"),
    [(LogisticRegression(), LINEAR), (RandomForestClassifier(n_estimators=5), FOREST)],
)
def test_unseen_categories_and_missing_values_are_served(estimator: Any, path: str) -> None:
    model = fitted(estimator, path)
    rows = serving_rows(
        island=["Atlantis", None],
        mass=[None, 4000.0],
        ringed=[None, True],
        grade=[9, 2],
    )
    predicted = model.predict(rows)
    assert set(predicted) <= {"a", "b"} and len(predicted) == 2
    assert np.isfinite(model.predict_proba(rows)).all()


def test_imputation_is_fitted_on_the_training_rows_only() -> None:
    frame = table()
    frame.loc[12:, "mass"] = 9000.0  # the rows outside the training split are heavier
    train = frame.iloc[:12]
    p = plan(train)
    model = build_pipeline(p, LogisticRegression()).fit(canonical_features(train, p), train.y)
    imputer = model.named_steps["prepare"].named_transformers_["col1"].named_steps["impute"]
    assert imputer.statistics_[0] == train["mass"].median() == 3900.0
    assert frame["mass"].median() == 9000.0


def test_the_artifact_carries_its_input_schema() -> None:
    model = fitted(LogisticRegression(), LINEAR)
    schema = schema_of(model)
    assert schema is not None
    assert schema.names == ("island", "mass", "ringed", "grade")
    island = schema.columns[0]
    assert island.categories == ("Biscoe", "Dream", "Torgersen")
    assert schema_of(LogisticRegression()) is None
