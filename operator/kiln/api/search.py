"""spec.search: hyperparameter search as trials, one pod each, then one final training.

    search:
      strategy: random                # grid | random
      maxTrials: 8                    # required for random; a grid's default is its size
      parallelism: 2                  # trial pods at once (default 1)
      maxFailedTrials: 1              # failed trials tolerated (default 0)
      seed: 7                         # default: spec.evaluation.seed
      objective:
        metric: accuracy              # a known metric; direction defaults from it
        validation: {kFolds: 5}       # or {fraction: 0.2} (the default), carved from the
                                      # training split: the test split is never seen
      parameters:                     # merged over spec.params, one trial's values each
        - {name: C, range: {min: 0.01, max: 100, scale: log}}
        - {name: max_iter, range: {min: 100, max: 400, type: int}}
        - {name: solver, values: [lbfgs, newton-cg]}

The shape is Katib's and Optuna's: a parameter is either a list of `values` (categorical
choices or discrete numbers, tried as written) or a numeric `range` (int or float, linear or
log scale; a float range needs `gridPoints` under the grid strategy, spread evenly on its
scale with both ends included; an int range's grid is every integer in it).

Every rule a CRD can state is a CEL rule here, with the field named; the models enforce the
same ones (plus what CEL cannot read: duplicate values, a name also in spec.params).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from kiln.api.cel import rule, rules
from kiln.api.common import MAX_MESSAGE_LENGTH, MAX_SHORT_TEXT, KilnModel
from kiln.api.fields import MetricName
from kiln.api.metrics import higher_is_better
from kiln.api.trainer_progress import TrainerProgress

SearchStrategy = Literal["grid", "random"]
ParameterType = Literal["int", "float"]
ParameterScale = Literal["linear", "log"]
ObjectiveDirection = Literal["maximize", "minimize"]

MAX_PARAMETERS = 8
MAX_VALUES = 64
MAX_TRIALS = 1000
MAX_PARALLELISM = 64
MAX_GRID_POINTS = 1000
# A range's bounds stay where a double holds every integer exactly and CEL's int() of them
# cannot overflow.
MAX_RANGE_BOUND = 1e12
# Under grid an int range is enumerated integer by integer: at most this many integers.
MAX_INT_GRID_SPAN = 1000
DEFAULT_VALIDATION_FRACTION = 0.2

_PARAMETER = "spec.search.parameters[]"
_RANGE = "spec.search.parameters[].range"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ParameterRange(KilnModel):
    """A numeric interval, both ends included."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule("self.min < self.max", f"{_RANGE}: min must be less than max"),
            rule(
                "self.scale != 'log' || self.min > 0.0",
                f"{_RANGE}: a log scale needs min greater than 0",
            ),
            rule(
                "self.type != 'int' || (self.min == double(int(self.min)) && "
                "self.max == double(int(self.max)))",
                f"{_RANGE}: an int range needs whole numbers as min and max",
            ),
            rule(
                "self.type != 'int' || !has(self.gridPoints)",
                f"{_RANGE}.gridPoints: only for float ranges (an int range's grid is every "
                "integer in it)",
            ),
        )
    )

    min: float = Field(
        ge=-MAX_RANGE_BOUND, le=MAX_RANGE_BOUND, description="Lowest value (inclusive)."
    )
    max: float = Field(
        ge=-MAX_RANGE_BOUND, le=MAX_RANGE_BOUND, description="Highest value (inclusive)."
    )
    type: ParameterType = Field(
        default="float", description="int: whole numbers only; float: any value in between."
    )
    scale: ParameterScale = Field(
        default="linear",
        description="linear: uniform in value; log: uniform in log(value) (min must be > 0), "
        "for rates and regularisation strengths spanning orders of magnitude.",
    )
    grid_points: int | None = Field(
        default=None,
        ge=2,
        le=MAX_GRID_POINTS,
        description="Float ranges under strategy grid: this many points spread evenly on the "
        "scale, min and max included.",
    )

    @model_validator(mode="after")
    def _valid_interval(self) -> ParameterRange:
        if not self.min < self.max:
            raise ValueError(f"{_RANGE}: min must be less than max")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"{_RANGE}: a log scale needs min greater than 0")
        if self.type == "int":
            if self.min != int(self.min) or self.max != int(self.max):
                raise ValueError(f"{_RANGE}: an int range needs whole numbers as min and max")
            if self.grid_points is not None:
                raise ValueError(f"{_RANGE}.gridPoints: only for float ranges")
        return self

    def grid_size(self) -> int | None:
        """How many points the grid strategy tries (None: a float range without gridPoints)."""
        if self.type == "int":
            return int(self.max) - int(self.min) + 1
        return self.grid_points


class SearchParameter(KilnModel):
    """One estimator parameter to vary: a list of values or a numeric range."""

    # Exactly one of values or range beside the name, as a property count: the apiserver's
    # CEL cannot see `values` (its items have no single type, so the field has no CEL type).
    model_config = ConfigDict(json_schema_extra={"minProperties": 2, "maxProperties": 2})

    name: str = Field(
        min_length=1,
        max_length=MAX_SHORT_TEXT,
        pattern=IDENTIFIER,
        description="The estimator's parameter (a keyword argument of its constructor).",
    )
    values: list[Any] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_VALUES,
        description="The values to try, as written (categorical choices or discrete numbers); "
        "random picks one uniformly, grid tries each.",
    )
    range: ParameterRange | None = Field(default=None, description="A numeric interval.")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchParameter:
        if (self.values is None) == (self.range is None):
            raise ValueError(f"{_PARAMETER}: set exactly one of values or range")
        if self.values is not None:
            spelled = [json.dumps(v, sort_keys=True) for v in self.values]
            if len(set(spelled)) != len(spelled):
                raise ValueError(f"spec.search.parameters[name={self.name}].values: duplicates")
        return self

    def grid_size(self) -> int | None:
        if self.values is not None:
            return len(self.values)
        assert self.range is not None
        return self.range.grid_size()


class ValidationSplit(KilnModel):
    """Where a trial's objective is measured: always inside the training split."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!(has(self.kFolds) && has(self.fraction))",
                "spec.search.objective.validation: set kFolds or fraction, not both",
            )
        )
    )

    k_folds: int | None = Field(
        default=None,
        ge=2,
        le=20,
        description="k-fold cross-validation on the training split (stratified for "
        "classifiers); the objective is the mean over the folds.",
    )
    fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of the training split held out for validation (stratified for "
        f"classifiers); {DEFAULT_VALIDATION_FRACTION} when neither is set.",
    )

    @model_validator(mode="after")
    def _one_method(self) -> ValidationSplit:
        if self.k_folds is not None and self.fraction is not None:
            raise ValueError("spec.search.objective.validation: set kFolds or fraction, not both")
        return self

    def holdout_fraction(self) -> float | None:
        """The validation share (None under k-fold)."""
        if self.k_folds is not None:
            return None
        return DEFAULT_VALIDATION_FRACTION if self.fraction is None else self.fraction


def _direction_rule() -> dict[str, str]:
    from kiln.api.metrics import METRIC_DIRECTIONS

    higher = sorted(m for m, d in METRIC_DIRECTIONS.items() if d == "higherIsBetter")
    listed = ", ".join(f"'{m}'" for m in higher)
    return rule(
        f"!has(self.direction) || (self.direction == 'maximize') == (self.metric in [{listed}])",
        "spec.search.objective.direction contradicts the metric's known direction",
    )


class SearchObjective(KilnModel):
    """What a trial is judged by."""

    model_config = ConfigDict(json_schema_extra=rules(_direction_rule()))

    metric: MetricName = Field(description="A known metric (see spec.evaluation.metrics).")
    direction: ObjectiveDirection | None = Field(
        default=None,
        description="maximize or minimize; defaults from the metric (log_loss, rmse and mae "
        "are minimized) and must agree with it.",
    )
    validation: ValidationSplit = Field(
        default_factory=ValidationSplit,
        description="k-fold cross-validation or a held-out fraction of the training split.",
    )

    @model_validator(mode="after")
    def _direction_agrees(self) -> SearchObjective:
        known: ObjectiveDirection = "maximize" if higher_is_better(self.metric) else "minimize"
        if self.direction is not None and self.direction != known:
            raise ValueError(
                f"spec.search.objective.direction contradicts the metric's known direction "
                f"({self.metric} is {known}d)"
            )
        return self

    def maximize(self) -> bool:
        return higher_is_better(self.metric)


class SearchSpec(KilnModel):
    """A hyperparameter search: trials in parallel pods, then the best trained once more."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "self.strategy != 'random' || has(self.maxTrials)",
                "spec.search.maxTrials is required for strategy random",
            ),
            rule(
                "!has(self.maxTrials) || self.parallelism <= self.maxTrials",
                "spec.search.parallelism must not exceed spec.search.maxTrials",
            ),
            rule(
                "self.strategy != 'grid' || self.parameters.all(p, !has(p.range) || "
                "p.range.type == 'int' || has(p.range.gridPoints))",
                "spec.search.parameters[].range.gridPoints is required for a float range "
                "under strategy grid",
            ),
            rule(
                "self.strategy != 'grid' || self.parameters.all(p, !has(p.range) || "
                f"p.range.type != 'int' || p.range.max - p.range.min <= {MAX_INT_GRID_SPAN}.0)",
                f"spec.search.parameters[].range: an int range under strategy grid spans at "
                f"most {MAX_INT_GRID_SPAN + 1} integers",
            ),
        )
    )

    strategy: SearchStrategy = Field(
        default="random",
        description="grid: every combination, in order (the last parameter varies fastest); "
        "random: each trial's values drawn from a generator seeded by (seed, trial number).",
    )
    parameters: list[SearchParameter] = Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="The parameters to vary; each trial's values are merged over spec.params.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    objective: SearchObjective = Field(description="The metric trials are ranked by.")
    max_trials: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS,
        description="Trials to run; required for random, the grid's size by default for grid "
        "(fewer runs the first points of the grid).",
    )
    parallelism: int = Field(
        default=1, ge=1, le=MAX_PARALLELISM, description="Trial pods running at once at most."
    )
    max_failed_trials: int = Field(
        default=0,
        ge=0,
        le=MAX_TRIALS,
        description="Failed trials tolerated; one more fails the run (TooManyFailedTrials).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Seed of the random strategy; spec.evaluation.seed when unset.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError("spec.search.parameters: a parameter is listed twice")
        if self.strategy == "random" and self.max_trials is None:
            raise ValueError("spec.search.maxTrials is required for strategy random")
        if self.max_trials is not None and self.parallelism > self.max_trials:
            raise ValueError("spec.search.parallelism must not exceed spec.search.maxTrials")
        if self.strategy == "grid":
            sizes = [p.grid_size() for p in self.parameters]
            if any(s is None for s in sizes):
                raise ValueError(
                    "spec.search.parameters[].range.gridPoints is required for a float range "
                    "under strategy grid"
                )
            for p in self.parameters:
                span = p.range.max - p.range.min if p.range is not None else 0.0
                if p.range is not None and p.range.type == "int" and span > MAX_INT_GRID_SPAN:
                    raise ValueError(
                        f"spec.search.parameters[name={p.name}].range: an int range under "
                        f"strategy grid spans at most {MAX_INT_GRID_SPAN + 1} integers"
                    )
            size = self.grid_size()
            if self.max_trials is not None and self.max_trials > size:
                raise ValueError(
                    f"spec.search.maxTrials ({self.max_trials}) exceeds the number of points "
                    f"in the grid ({size})"
                )
            if self.max_trials is None and size > MAX_TRIALS:
                raise ValueError(
                    f"spec.search.maxTrials is required for a grid of more than {MAX_TRIALS} points"
                )
            if self.parallelism > size:
                raise ValueError("spec.search.parallelism exceeds the number of points in the grid")
        return self

    def grid_size(self) -> int:
        """Points of the full grid (every parameter's grid size multiplied)."""
        size = 1
        for parameter in self.parameters:
            points = parameter.grid_size()
            if points is None:
                raise ValueError(f"spec.search.parameters[name={parameter.name}] has no grid")
            size *= points
        return size

    def total_trials(self) -> int:
        if self.max_trials is not None:
            return self.max_trials
        return self.grid_size()

    def effective_seed(self, evaluation_seed: int) -> int:
        return evaluation_seed if self.seed is None else self.seed


# --- status -------------------------------------------------------------------------------

TrialPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
SearchStage = Literal["Searching", "Training"]

# Finished trials kept in the status (the best, and the latest failures); every trial's
# report is in the object store.
MAX_KEPT_TRIALS = 5


class TrialRecord(KilnModel):
    """One trial: its values, attempts and result."""

    trial: int = Field(ge=0, description="Trial number, from 0, in the strategy's order.")
    phase: TrialPhase = Field(description="Phase of this trial.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The searched parameters' values of this trial."
    )
    attempts: int = Field(default=0, ge=0, description="Pods started for this trial.")
    pod: str | None = Field(default=None, max_length=253, description="Pod of the latest attempt.")
    start_time: datetime | None = Field(default=None, description="When the trial started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    next_attempt_time: datetime | None = Field(
        default=None, description="When the next attempt may start (exponential backoff)."
    )
    objective: float | None = Field(default=None, description="The objective's value.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Validation metrics (means over the folds)."
    )
    reason: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT, description="Why it failed."
    )
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE_LENGTH, description="Details of the outcome."
    )
    trainer: TrainerProgress | None = Field(
        default=None, description="The trainer's phases in the trial's latest pod."
    )


class SearchStatus(KilnModel):
    """Where a run's search stands; the counters are updated in the same status write that
    moves a trial out of `active`, so a restart neither counts a trial twice nor loses one."""

    stage: SearchStage = Field(
        default="Searching", description="Searching (trials) or Training (the best, once more)."
    )
    total: int = Field(default=0, ge=0, description="Trials the search runs.")
    started: int = Field(
        default=0, ge=0, description="Trials started: numbers 0..started-1, in order."
    )
    succeeded: int = Field(default=0, ge=0, description="Trials that succeeded.")
    failed: int = Field(default=0, ge=0, description="Trials that failed.")
    trial_seconds: float = Field(
        default=0.0, ge=0, description="Summed duration of the finished trials (for the ETA)."
    )
    active: list[TrialRecord] = Field(
        default_factory=list, description="Trials pending or running."
    )
    best: list[TrialRecord] = Field(
        default_factory=list,
        description=f"The {MAX_KEPT_TRIALS} best succeeded trials, best first (ties: the "
        "lower trial number).",
    )
    failures: list[TrialRecord] = Field(
        default_factory=list, description=f"The {MAX_KEPT_TRIALS} latest failed trials."
    )


class Progress(KilnModel):
    """How far a run's search is, for people and printer columns."""

    trials: str = Field(
        max_length=MAX_SHORT_TEXT, description="Finished of total trials, e.g. 5/8."
    )
    total: int = Field(ge=0, description="Trials the search runs.")
    succeeded: int = Field(ge=0, description="Trials that succeeded.")
    failed: int = Field(ge=0, description="Trials that failed.")
    running: int = Field(ge=0, description="Trials whose pod runs.")
    pending: int = Field(ge=0, description="Trials started but not running (or retrying).")
    objective: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT, description="The objective's metric."
    )
    best_objective: float | None = Field(default=None, description="Best objective so far.")
    best_trial: int | None = Field(default=None, description="The trial that reached it.")
    eta: datetime | None = Field(
        default=None,
        description="When the last trial should finish, from the finished trials' mean "
        "duration and the parallelism (unset before any trial finished).",
    )
    stage: SearchStage = Field(default="Searching", description="Searching or Training.")
