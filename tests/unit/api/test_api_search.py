"""spec.search: what the CRD's rules and the models accept, and that they agree."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from pydantic import ValidationError
from tests.support.builders import TrainingJobBuilder
from tests.support.crd_validation import validate

from kiln.api import crdgen
from kiln.api.search import SearchSpec
from kiln.api.training_job import TrainingJob

pytestmark = pytest.mark.unit

CRD = next(crdgen.crd(k) for k in crdgen.KINDS if k.kind == "TrainingJob")


def job(search: dict[str, Any], **params: Any) -> dict[str, Any]:
    return TrainingJobBuilder("iris").params(**params).spec(search=search).obj()


def grid(*parameters: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "strategy": "grid",
        "objective": {"metric": "accuracy"},
        "parameters": list(parameters),
        **fields,
    }


def values(name: str, n: int) -> dict[str, Any]:
    return {"name": name, "values": list(range(n))}


def int_range(name: str, low: int, high: int) -> dict[str, Any]:
    return {"name": name, "range": {"min": low, "max": high, "type": "int"}}


def test_a_grid_whose_size_equals_max_trials_is_admitted_and_one_more_is_not() -> None:
    # 3 values x 4 integers x 2 float points = 24. The apiserver's CEL cannot count
    # `values` (its items have no CEL type), so the size is the model's to check: the run
    # stalls with InvalidSpec before any pod.
    parameters = (
        values("solver", 3),
        int_range("max_iter", 1, 4),
        {"name": "tol", "range": {"min": 0.1, "max": 1, "gridPoints": 2, "scale": "log"}},
    )
    exact = job(grid(*parameters, maxTrials=24))
    assert validate(exact, CRD) == []
    assert TrainingJob.model_validate(exact).spec.search.grid_size() == 24  # type: ignore[union-attr]
    over = job(grid(*parameters, maxTrials=25))
    with pytest.raises(ValidationError, match="exceeds the number of points in the grid"):
        TrainingJob.model_validate(over)
    wide = job(grid(*parameters, parallelism=25, maxTrials=24))
    with pytest.raises(ValidationError, match="parallelism"):
        TrainingJob.model_validate(wide)


def test_a_large_grid_needs_max_trials() -> None:
    parameters = [int_range("max_iter", 1, 100), int_range("verbose", 1, 100)]
    with pytest.raises(ValidationError, match="maxTrials is required for a grid of more than 1000"):
        TrainingJob.model_validate(job(grid(*parameters)))
    TrainingJob.model_validate(job(grid(*parameters, maxTrials=50)))


def test_a_parameter_needs_exactly_one_of_values_or_range_at_apply_time() -> None:
    both = {"name": "a", "values": [1, 2], "range": {"min": 1, "max": 2}}
    neither = {"name": "a"}
    for parameter in (both, neither):
        document = job(grid(parameter))
        assert any("spec.search.parameters[0]" in e for e in validate(document, CRD)), parameter
        with pytest.raises(ValidationError, match="exactly one of values or range"):
            TrainingJob.model_validate(document)


def test_no_cel_rule_reads_a_field_the_apiserver_gives_no_type() -> None:
    """The apiserver leaves a property without a type (free-form JSON, or a list of it) out
    of CEL's view, and refuses the whole CRD when a rule names it."""
    untyped: set[str] = set()
    rules: list[str] = []

    def walk(schema: dict[str, Any]) -> None:
        rules.extend(r["rule"] for r in schema.get("x-kubernetes-validations", []))
        for name, sub in (schema.get("properties") or {}).items():
            items = sub.get("items") or {}
            if "type" not in sub or (sub.get("type") == "array" and "type" not in items):
                untyped.add(name)
            walk(sub)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"])
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"])

    for version in CRD["spec"]["versions"]:
        walk(version["schema"]["openAPIV3Schema"])
    import re

    offending = [
        (name, rule) for name in untyped for rule in rules if re.search(rf"\.{name}\b", rule)
    ]
    assert untyped and offending == [], offending


def test_a_grid_without_max_trials_runs_every_point() -> None:
    spec = SearchSpec.model_validate(grid(values("a", 3), int_range("b", 0, 1)))
    assert spec.total_trials() == 6
    random = SearchSpec.model_validate(
        {"maxTrials": 5, "objective": {"metric": "rmse"}, "parameters": [values("a", 2)]}
    )
    assert random.strategy == "random" and random.total_trials() == 5


def test_the_direction_defaults_from_the_metric_and_may_be_stated() -> None:
    minimized = {"metric": "rmse", "direction": "minimize"}
    spec = SearchSpec.model_validate(
        {"maxTrials": 2, "objective": minimized, "parameters": [values("alpha", 2)]}
    )
    assert not spec.objective.maximize()
    document = job({"maxTrials": 2, "objective": minimized, "parameters": [values("alpha", 2)]})
    assert validate(document, CRD) == []
    wrong = copy.deepcopy(document)
    wrong["spec"]["search"]["objective"]["direction"] = "maximize"
    assert any("direction contradicts" in e for e in validate(wrong, CRD))


def test_a_searched_parameter_also_in_params_is_refused_by_the_model() -> None:
    document = job(
        {"maxTrials": 2, "objective": {"metric": "accuracy"}, "parameters": [values("C", 2)]},
        C=1.0,
    )
    with pytest.raises(ValidationError, match=r"spec.search.parameters\[name=C\] is also set"):
        TrainingJob.model_validate(document)


FOREST = "sklearn.ensemble.RandomForestClassifier"


def forest(search: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    document = TrainingJobBuilder("iris").estimator(FOREST).params(**params)
    return (document.spec(search=search) if search else document).obj()


def test_a_searched_name_the_estimator_does_not_have_is_refused_naming_it_and_the_closest() -> None:
    document = forest(grid(values("max_dept", 2)))
    with pytest.raises(ValidationError) as info:
        TrainingJob.model_validate(document)
    assert (
        "spec.search.parameters[name=max_dept]: RandomForestClassifier has no parameter "
        "max_dept (did you mean max_depth?)"
    ) in str(info.value)
    # The CRD cannot know the estimator's parameters: the operator stalls it (InvalidSpec).
    assert validate(document, CRD) == []
    TrainingJob.model_validate(forest(grid(values("max_depth", 2))))


def test_a_params_key_the_estimator_does_not_have_is_refused_naming_it() -> None:
    with pytest.raises(
        ValidationError, match=r"spec.params.n_estimator: .* \(did you mean n_estim"
    ):
        TrainingJob.model_validate(forest(n_estimator=10))
    with pytest.raises(ValidationError, match=r"spec.params.zzzz: .*\(its parameters: .*max_depth"):
        TrainingJob.model_validate(forest(zzzz=1))
    TrainingJob.model_validate(forest(n_estimators=10, max_depth=3))


@pytest.mark.parametrize(
    ("estimator", "name"),
    [("xgboost.XGBClassifier", "max_depht"), ("lightgbm.LGBMRegressor", "num_leafs")],
)
def test_boosting_estimators_are_checked_too(estimator: str, name: str) -> None:
    document = TrainingJobBuilder("iris").estimator(estimator).params(**{name: 3}).obj()
    with pytest.raises(ValidationError, match=f"spec.params.{name}: .* has no parameter"):
        TrainingJob.model_validate(document)
    lightgbm_extra = TrainingJobBuilder("iris").estimator("lightgbm.LGBMRegressor")
    TrainingJob.model_validate(lightgbm_extra.params(deterministic=True).obj())


def test_an_estimator_outside_the_table_or_a_command_is_left_to_the_trainer() -> None:
    # Not allow-listed: the trainer fails it with InvalidEstimator, which says more.
    TrainingJob.model_validate(
        TrainingJobBuilder("iris").estimator("mylib.Model").params(anything=1).obj()
    )
    custom = TrainingJobBuilder("iris").spec(estimator=None, command=["python", "t.py"])
    TrainingJob.model_validate(custom.params(anything=1).obj())


def test_duplicate_values_and_names_are_refused_by_the_model() -> None:
    base = {"maxTrials": 2, "objective": {"metric": "accuracy"}}
    with pytest.raises(ValidationError, match="duplicates"):
        SearchSpec.model_validate({**base, "parameters": [{"name": "a", "values": [1, 1]}]})
    with pytest.raises(ValidationError, match="listed twice"):
        SearchSpec.model_validate({**base, "parameters": [values("a", 2), values("a", 3)]})


def test_validation_defaults_to_a_fifth_of_the_training_split() -> None:
    spec = SearchSpec.model_validate(
        {"maxTrials": 2, "objective": {"metric": "accuracy"}, "parameters": [values("a", 2)]}
    )
    assert spec.objective.validation.holdout_fraction() == 0.2
    assert spec.parallelism == 1 and spec.max_failed_trials == 0
    assert spec.effective_seed(7) == 7


@pytest.mark.parametrize(("low", "high"), list(itertools.product([-3.0, 0.5, 2.0], repeat=2)))
def test_range_rules_match_between_cel_and_model(low: float, high: float) -> None:
    for scale in ("linear", "log"):
        parameter = {"name": "C", "range": {"min": low, "max": high, "scale": scale}}
        document = job({"maxTrials": 2, "objective": {"metric": "accuracy"},
                        "parameters": [parameter]})  # fmt: skip
        admitted = validate(document, CRD) == []
        try:
            TrainingJob.model_validate(document)
            parsed = True
        except ValidationError:
            parsed = False
        assert admitted == parsed, (low, high, scale)
        assert admitted == (low < high and (scale == "linear" or low > 0))
