import pytest

from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.estimators import ALLOWED_ESTIMATORS, prepare_estimator

pytestmark = pytest.mark.unit

FOREST = "sklearn.ensemble.RandomForestClassifier"


def _failure(path: str, params: dict[str, object]) -> TrainingError:
    with pytest.raises(TrainingError) as info:
        prepare_estimator(path, params, seed=1)
    return info.value


def test_mistyped_param_names_it_and_suggests_the_closest_valid_name() -> None:
    error = _failure(FOREST, {"n_estimator": 10})
    assert error.reason is Reason.INVALID_PARAMS
    assert "'n_estimator'" in error.message
    assert "did you mean 'n_estimators'?" in error.message
    assert "\n" not in error.message


def test_param_without_a_close_match_lists_the_valid_names() -> None:
    error = _failure("sklearn.svm.SVC", {"zzzz": 1})
    assert error.reason is Reason.INVALID_PARAMS
    assert "valid:" in error.message and "kernel" in error.message


def test_out_of_range_value_is_rejected_by_sklearns_own_constraints() -> None:
    error = _failure(FOREST, {"n_estimators": -3})
    assert error.reason is Reason.INVALID_PARAMS
    assert "n_estimators" in error.message and "-3" in error.message


def test_value_outside_an_enumeration_is_rejected_before_fitting() -> None:
    error = _failure("sklearn.svm.SVC", {"kernel": "rbff"})
    assert error.reason is Reason.INVALID_PARAMS
    assert "kernel" in error.message


@pytest.mark.parametrize(
    ("path", "suggestion"),
    [
        ("RandomForestClassifier", FOREST),
        ("sklearn.ensemble._forest.RandomForestClassifier", FOREST),
        ("sklearn.linear_model.LogisticRegresion", "sklearn.linear_model.LogisticRegression"),
    ],
)
def test_estimator_off_the_allow_list_is_refused_with_a_suggestion(
    path: str, suggestion: str
) -> None:
    error = _failure(path, {})
    assert error.reason is Reason.INVALID_ESTIMATOR
    assert f"did you mean {suggestion!r}" in error.message


@pytest.mark.parametrize("path", ["os.system", "subprocess.Popen", "builtins.eval"])
def test_arbitrary_code_is_never_imported(path: str) -> None:
    assert _failure(path, {}).reason is Reason.INVALID_ESTIMATOR


def test_seed_becomes_random_state_when_the_user_did_not_set_one() -> None:
    prepared = prepare_estimator(FOREST, {"n_estimators": 5}, seed=42)
    assert prepared.estimator.get_params()["random_state"] == 42
    assert prepared.effective_params == {"n_estimators": 5, "random_state": 42}


def test_user_random_state_wins_over_the_seed() -> None:
    prepared = prepare_estimator(FOREST, {"random_state": 3}, seed=42)
    assert prepared.estimator.get_params()["random_state"] == 3


def test_estimator_without_random_state_gets_none_added() -> None:
    prepared = prepare_estimator("sklearn.neighbors.KNeighborsClassifier", {}, seed=42)
    assert "random_state" not in prepared.effective_params


def test_task_comes_from_the_estimator() -> None:
    assert prepare_estimator(FOREST, {}, seed=0).is_classifier
    assert not prepare_estimator("sklearn.linear_model.Ridge", {}, seed=0).is_classifier


def test_every_allow_listed_estimator_exists_and_has_a_task() -> None:
    for path in sorted(ALLOWED_ESTIMATORS):
        prepared = prepare_estimator(path, {}, seed=0)
        expected_classifier = path.endswith(("Classifier", "ClassifierCV", "SVC", "NB")) or (
            path.endswith(("LogisticRegression", "LogisticRegressionCV", "Perceptron"))
            or path.endswith("NearestCentroid")
        )
        assert prepared.is_classifier is expected_classifier, path


# --- XGBoost and LightGBM ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "xgboost.XGBClassifier",
        "xgboost.XGBRegressor",
        "lightgbm.LGBMClassifier",
        "lightgbm.LGBMRegressor",
    ],
)
def test_boosting_libraries_are_allow_listed_and_seeded(path: str) -> None:
    assert path in ALLOWED_ESTIMATORS
    prepared = prepare_estimator(path, {"n_estimators": 10}, 5)
    assert prepared.effective_params["random_state"] == 5
    assert prepared.estimator.get_params()["n_estimators"] == 10
    assert prepared.is_classifier == path.endswith("Classifier")


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("xgboost.XGBClassifier", {"learning_rate": 0}, "'learning_rate'"),
        ("xgboost.XGBClassifier", {"subsample": 1.5}, "'subsample'"),
        ("xgboost.XGBClassifier", {"tree_method": "gpu_hist"}, "'tree_method'"),
        ("xgboost.XGBRegressor", {"device": "cuda"}, "'device'"),
        ("xgboost.XGBRegressor", {"early_stopping_rounds": 5}, "'early_stopping_rounds'"),
        ("lightgbm.LGBMClassifier", {"num_leaves": 1}, "'num_leaves'"),
        ("lightgbm.LGBMRegressor", {"boosting_type": "goss2"}, "'boosting_type'"),
        ("lightgbm.LGBMRegressor", {"n_estimators": "many"}, "'n_estimators'"),
    ],
)
def test_boosting_values_are_checked_before_fitting(
    path: str, params: dict[str, object], fragment: str
) -> None:
    with pytest.raises(TrainingError) as info:
        prepare_estimator(path, params, 0)
    assert info.value.reason is Reason.INVALID_PARAMS
    assert fragment in info.value.message


def test_boosting_param_name_typo_is_named_with_a_suggestion() -> None:
    with pytest.raises(TrainingError) as info:
        prepare_estimator("xgboost.XGBClassifier", {"max_dept": 3}, 0)
    assert info.value.reason is Reason.INVALID_PARAMS
    assert "'max_depth'" in info.value.message


def test_xgboost_classifier_is_fitted_on_encoded_labels_lightgbm_is_not() -> None:
    assert prepare_estimator("xgboost.XGBClassifier", {}, 0).encode_labels
    assert not prepare_estimator("xgboost.XGBRegressor", {}, 0).encode_labels
    assert not prepare_estimator("lightgbm.LGBMClassifier", {}, 0).encode_labels


def test_lightgbm_runs_quiet_and_deterministic_unless_told_otherwise() -> None:
    params = prepare_estimator("lightgbm.LGBMClassifier", {}, 0).effective_params
    assert params["verbose"] == -1 and params["deterministic"] is True
    loud = prepare_estimator("lightgbm.LGBMClassifier", {"verbose": 1}, 0).effective_params
    assert loud["verbose"] == 1
