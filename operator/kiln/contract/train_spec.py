"""The job description ``kiln-train`` receives as JSON in ``KILN_TRAIN_SPEC``.

The operator's pod builder serialises exactly this model (``TrainSpec.model_dump_json(
by_alias=True)``); keys are camelCase. See docs/trainer.md for the schema with examples.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kiln.api import metrics
from kiln.api.fields import MetricName
from kiln.api.preprocessing import PreprocessingSpec
from kiln.api.training_job import DatasetFormat, DatasetSpec
from kiln.store import join_uri

# The dataset is the TrainingJob's spec.dataset as it is: one model, one set of checks, so
# the trainer accepts exactly what a TrainingJob can carry (and the CRD has defaulted).
__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "DatasetFormat",
    "DatasetSpec",
    "EvaluationSpec",
    "OutputSpec",
    "RunIdentity",
    "TrainSpec",
]

# The metric names are defined once, in kiln.api.metrics.
CLASSIFICATION_METRICS = tuple(metrics.CLASSIFICATION_METRICS)
REGRESSION_METRICS = tuple(metrics.REGRESSION_METRICS)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class EvaluationSpec(_Model):
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0, description="Fraction held out.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Split and estimator seed.")
    metrics: list[MetricName] = Field(
        default_factory=list,
        description="Metrics to report; empty means every metric for the task. The first "
        "is the primary metric (used for the fairness gap).",
    )


class OutputSpec(_Model):
    uri: str = Field(description="Artifact prefix: s3://bucket/prefix or file:///path.")

    @field_validator("uri")
    @classmethod
    def _writable_scheme(cls, value: str) -> str:
        if not value.startswith(("s3://", "file:///")):
            raise ValueError("output.uri must start with s3:// or file:///")
        return value


class RunIdentity(_Model):
    namespace: str = Field(min_length=1)
    training_job: str = Field(min_length=1)
    number: int = Field(ge=1, description="Run number of the TrainingJob, 1-based.")


class TrialSpec(_Model):
    """Trial mode: score these params on the training split only, produce no model."""

    number: int = Field(ge=0, description="Trial number within the run's search.")
    metric: MetricName = Field(description="The objective.")
    maximize: bool = Field(description="Whether a larger objective is better.")
    k_folds: int | None = Field(default=None, ge=2, le=20, description="k-fold CV.")
    validation_fraction: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="Held-out share of the training split."
    )

    @model_validator(mode="after")
    def _one_method(self) -> TrialSpec:
        if (self.k_folds is None) == (self.validation_fraction is None):
            raise ValueError("trial: set exactly one of kFolds or validationFraction")
        return self


class SearchSummary(_Model):
    """Final mode: the search that chose the params (its trials' reports are gathered)."""

    strategy: str
    seed: int
    trials: int = Field(ge=0, description="Trials of the search: reports trial-0 … trial-N-1.")
    best_trial: int = Field(ge=0)
    metric: MetricName
    maximize: bool
    best_objective: float


class TrainSpec(_Model):
    model: str = Field(min_length=1, description="Registry name of the model.")
    estimator: str = Field(description="Dotted path, e.g. sklearn.ensemble.RandomForestClassifier.")
    params: dict[str, Any] = Field(default_factory=dict)
    # The TrainingJob's spec.dataset and spec.preprocessing as they are (the same models,
    # camelCase on the wire).
    dataset: DatasetSpec
    preprocessing: PreprocessingSpec | None = None
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec
    run: RunIdentity
    # A search's trial (no model), or the final training of its best params.
    trial: TrialSpec | None = None
    search: SearchSummary | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> TrainSpec:
        if self.trial is not None and self.search is not None:
            raise ValueError("a spec is a trial or a search's final training, not both")
        return self

    def trial_report_uri(self, number: int) -> str:
        """Where trial `number` of this run's search leaves its report."""
        return join_uri(self.artifact_prefix(), "trials", f"trial-{number}.json")

    def artifact_prefix(self) -> str:
        """``<output>/<namespace>/<trainingjob>/run-<N>`` without a trailing slash."""
        return join_uri(
            self.output.uri, self.run.namespace, self.run.training_job, f"run-{self.run.number}"
        )
