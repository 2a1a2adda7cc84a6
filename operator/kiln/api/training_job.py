"""TrainingJob: what to train, on which data, and how its result is registered."""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from kiln.api.cel import at_least_one_bound, matches, min_le_max, rule, rules
from kiln.api.common import (
    DNS_LABEL_PATTERN,
    MAX_LIST_ITEMS,
    MAX_MESSAGE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SHORT_TEXT,
    MAX_URI_LENGTH,
    Conditions,
    KilnModel,
    LocalObjectReference,
    ObjectMeta,
    ResourceRequirements,
)
from kiln.api.estimator_params import ESTIMATOR_PARAMS
from kiln.api.fields import (
    ColumnName,
    ContainerImage,
    MetricName,
    ModelName,
    ModelVersionName,
    Sha256,
)
from kiln.api.preprocessing import PreprocessingSpec
from kiln.api.search import Progress, SearchSpec, SearchStatus
from kiln.api.trainer_progress import TrainerProgress

DATASET_URI_RULE = r"^(s3|file|https)://.+"
OUTPUT_URI_RULE = r"^(s3|file)://.+"
DOTTED_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


def _cron_field(number: str, *, names: str = "", extra: str = "") -> str:
    """One cron field: a comma list of `*`, N or N-M (names allowed), each with an optional
    /step, plus the field's own extras (`?`, `L`, `N#k`)."""
    value = f"({number}{'|' + names if names else ''})"
    item = rf"(\*|{value}(-{value})?)(/[1-9][0-9]?)?"
    if extra:
        item = f"({item}|{extra})"
    return f"{item}(,{item})*"


_MONTHS = "(?i:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
_DAYS = "(?i:SUN|MON|TUE|WED|THU|FRI|SAT)"
# Five fields with every number in its range (minute 0-59, hour 0-23, day of month 1-31,
# month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT), or a macro. RE2 and Python agree on
# it, so the CRD and the model refuse the same schedules; what no regex sees (31 FEB) the
# operator still reports as Stalled.
CRON_RULE = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " +".join(
        [
            _cron_field("[0-5]?[0-9]"),
            _cron_field("[01]?[0-9]|2[0-3]"),
            _cron_field("0?[1-9]|[12][0-9]|3[01]", extra=r"\?|L"),
            _cron_field("0?[1-9]|1[0-2]", names=_MONTHS),
            _cron_field("[0-7]", names=_DAYS, extra=r"\?|[0-7]#[1-5]"),
        ]
    )
    + ")$"
)

TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
ApprovalMode = Literal["auto", "manual"]
DatasetFormat = Literal["csv", "parquet"]


class DatasetSpec(KilnModel):
    """The training data: one table with a target column."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!has(self.features) || !(self.target in self.features)",
                "spec.dataset.target must not be listed in spec.dataset.features",
            ),
            rule(
                "!has(self.sensitiveColumn) || !(self.sensitiveColumn == self.target)",
                "spec.dataset.sensitiveColumn must differ from spec.dataset.target",
            ),
        )
    )

    uri: str = Field(
        min_length=1,
        max_length=MAX_URI_LENGTH,
        description="Where the table is: s3://bucket/key, file:///path (a mounted PVC) "
        "or https://host/path.",
        json_schema_extra=rules(
            rule(
                matches(DATASET_URI_RULE),
                "spec.dataset.uri must start with s3://, file:// or https://",
            )
        ),
    )
    sha256: Sha256 | None = Field(
        default=None,
        description="Pinned SHA-256 of the dataset file; training fails with IntegrityError "
        "when the data does not match. The digest is always recorded, pinned or not.",
    )
    format: DatasetFormat = Field(default="csv", description="File format: csv or parquet.")
    target: ColumnName = Field(description="Name of the column to predict.")
    features: list[ColumnName] | None = Field(
        default=None,
        max_length=MAX_LIST_ITEMS * 16,
        description="Feature columns; all columns except the target (and the sensitive "
        "column) when omitted.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    sensitive_column: ColumnName | None = Field(
        default=None,
        description="Column with a protected attribute, used for the fairness gate and "
        "never fed to the model.",
    )

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> DatasetSpec:
        if not re.match(DATASET_URI_RULE, self.uri):
            raise ValueError("spec.dataset.uri must start with s3://, file:// or https://")
        if self.features is not None and self.target in self.features:
            raise ValueError("spec.dataset.target must not be listed in spec.dataset.features")
        if self.sensitive_column is not None and self.sensitive_column == self.target:
            raise ValueError("spec.dataset.sensitiveColumn must differ from spec.dataset.target")
        return self


class EvaluationSpec(KilnModel):
    """How the model is evaluated on held-out data."""

    test_size: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of rows held out for evaluation, strictly between 0 and 1.",
    )
    seed: int = Field(
        default=42,
        ge=0,
        le=2**32 - 1,
        description="Random seed for the split and the estimator: same inputs, same model.",
    )
    metrics: list[MetricName] = Field(
        default_factory=list,
        max_length=32,
        description="Metrics to compute; the trainer's defaults for the task when empty "
        "(every metric that applies). The first is the primary metric.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class S3CredentialsReference(KilnModel):
    """A Secret holding S3 credentials; the operator passes them to the pod by reference."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the Secret in the TrainingJob's namespace.",
    )
    access_key_id_key: str = Field(
        default="AWS_ACCESS_KEY_ID",
        max_length=MAX_SHORT_TEXT,
        description="Key of the access key id in the Secret.",
    )
    secret_access_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY",
        max_length=MAX_SHORT_TEXT,
        description="Key of the secret access key in the Secret.",
    )


class OutputSpec(KilnModel):
    """Where the trained artifact is stored, and the S3 access used for data and artifacts."""

    uri: str | None = Field(
        default=None,
        max_length=MAX_URI_LENGTH,
        description="Artifact location prefix (s3://bucket/prefix or file:///path); "
        "defaults from the operator config. The artifact lands at "
        "<uri>/<model>/<trainingjob>-<run>/model.skops.",
        json_schema_extra=rules(
            rule(
                matches(OUTPUT_URI_RULE),
                "spec.output.uri must start with s3:// or file://",
            )
        ),
    )
    s3_endpoint: str | None = Field(
        default=None,
        max_length=MAX_URI_LENGTH,
        pattern=r"^https?://[^\s]+$",
        description="S3 endpoint URL (for S3-compatible stores); defaults from the operator "
        "config.",
    )
    credentials_secret_ref: S3CredentialsReference | None = Field(
        default=None,
        description="Secret with S3 credentials, used for s3:// datasets and artifacts. "
        "Credentials never appear in the spec.",
    )

    @model_validator(mode="after")
    def _uri_scheme(self) -> OutputSpec:
        if self.uri is not None and not re.match(OUTPUT_URI_RULE, self.uri):
            raise ValueError("spec.output.uri must start with s3:// or file://")
        return self


class VolumeMount(KilnModel):
    """A PersistentVolumeClaim mounted into the training pod (for file:// data/output)."""

    name: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=DNS_LABEL_PATTERN,
        description="Volume name inside the pod.",
    )
    claim_name: str = Field(
        min_length=1, max_length=253, description="PersistentVolumeClaim in the same namespace."
    )
    mount_path: str = Field(
        min_length=2,
        max_length=1024,
        pattern=r"^/[^:]*$",
        description="Absolute path where the claim appears, e.g. /data.",
    )
    read_only: bool = Field(
        default=True, description="Mount read-only (set false for a file:// output)."
    )


class MetricThreshold(KilnModel):
    """A bound on one evaluation metric."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            at_least_one_bound("spec.registration.thresholds[]"),
            min_le_max("spec.registration.thresholds[]"),
        )
    )

    metric: MetricName = Field(description="Metric name.")
    min: float | None = Field(default=None, description="Lowest acceptable value (inclusive).")
    max: float | None = Field(default=None, description="Highest acceptable value (inclusive).")

    @model_validator(mode="after")
    def _bounds(self) -> MetricThreshold:
        if self.min is None and self.max is None:
            raise ValueError("spec.registration.thresholds[]: set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("spec.registration.thresholds[]: min must be <= max")
        return self


class NotWorseThanApproved(KilnModel):
    """Compare with the newest Approved version of the same model."""

    metric: MetricName = Field(description="Metric to compare; its direction is known.")
    max_degradation: float = Field(
        default=0.0,
        ge=0,
        description="How much worse than the Approved version the new one may be, in the "
        "metric's own units (absolute, not relative).",
    )


class FairnessGate(KilnModel):
    """Limit the gap of a metric between the groups of a sensitive column."""

    sensitive_column: ColumnName = Field(description="Column whose groups are compared.")
    metric: MetricName = Field(
        description="Metric computed per group. The trainer computes it for its primary "
        "metric, so the operator puts this metric first in the evaluation metrics."
    )
    max_gap: float = Field(
        ge=0, description="Largest allowed difference between the best and the worst group."
    )


class RegistrationPolicy(KilnModel):
    """Gates a new ModelVersion must pass before it is approved."""

    thresholds: list[MetricThreshold] = Field(
        default_factory=list,
        max_length=32,
        description="Bounds on evaluation metrics.",
    )
    not_worse_than_approved: NotWorseThanApproved | None = Field(
        default=None,
        description="Reject a model worse than the current Approved version by more than "
        "maxDegradation.",
    )
    fairness: FairnessGate | None = Field(
        default=None, description="Largest allowed metric gap across a sensitive column."
    )
    approval: ApprovalMode = Field(
        default="auto",
        description="auto: a version that passes every gate is Approved; manual: it stays "
        "Pending until a person approves it. A failing gate always Rejects.",
    )


class DatasetChangeTrigger(KilnModel):
    """Start a run when the dataset's digest or ETag changes."""

    poll_interval_seconds: int = Field(
        default=300,
        ge=30,
        le=86400,
        description="How often to check the dataset for a change.",
    )


class Triggers(KilnModel):
    """When to retrain (continuous training). Each run is numbered."""

    schedule: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Cron schedule in UTC (five fields or @daily-style macros).",
        json_schema_extra=rules(
            rule(
                matches(CRON_RULE),
                "spec.triggers.schedule must be a cron expression with five fields in "
                "range (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7) or a "
                "macro such as @daily",
            )
        ),
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default="Forbid",
        description="What to do when a trigger fires during a run: Allow a parallel run, "
        "Forbid (skip) it, or Replace the running one.",
    )
    successful_runs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Finished successful runs whose pods are kept."
    )
    failed_runs_history_limit: int = Field(
        default=1, ge=0, le=100, description="Failed runs whose pods are kept."
    )
    dataset_change: DatasetChangeTrigger | None = Field(
        default=None, description="Retrain when the dataset changes."
    )
    suspend: bool = Field(
        default=False, description="Stop starting new runs; a running one continues."
    )

    @model_validator(mode="after")
    def _cron_shape(self) -> Triggers:
        if self.schedule is not None and not re.match(CRON_RULE, self.schedule):
            raise ValueError("spec.triggers.schedule must be a cron expression in range")
        return self


class TrainingJobSpec(KilnModel):
    """What to train and how."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "has(self.estimator) != has(self.command)",
                "spec: set exactly one of spec.estimator or spec.command",
            ),
            rule(
                "!has(self.preprocessing) || !has(self.preprocessing.columns) || "
                "self.preprocessing.columns.all(c, c.name != self.dataset.target)",
                "spec.preprocessing.columns: the target column is not prepared as a feature",
            ),
            rule(
                "!has(self.registration) || !has(self.registration.fairness) || "
                "(has(self.dataset.sensitiveColumn) && "
                "self.dataset.sensitiveColumn == self.registration.fairness.sensitiveColumn)",
                "spec.registration.fairness.sensitiveColumn must equal "
                "spec.dataset.sensitiveColumn",
            ),
            rule(
                "!has(self.search) || has(self.estimator)",
                "spec.search needs spec.estimator (a custom command does not run trials)",
            ),
        )
    )

    model: ModelName
    image: ContainerImage | None = Field(
        default=None, description="Trainer image; defaults from the operator config."
    )
    estimator: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Dotted path of the estimator class, e.g. "
        "sklearn.ensemble.RandomForestClassifier (must be on the trainer's allow-list).",
        json_schema_extra=rules(
            rule(
                matches(DOTTED_PATH),
                "spec.estimator must be a dotted Python path such as "
                "sklearn.linear_model.LogisticRegression",
            )
        ),
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Custom training command instead of an estimator; it must follow the "
        "trainer protocol (read KILN_TRAIN_SPEC, write the termination message).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Estimator parameters, passed as keyword arguments: each name one of the "
        "estimator's (checked by the operator, InvalidSpec), each value validated by the "
        "trainer before fitting.",
    )
    dataset: DatasetSpec = Field(description="The training data.")
    preprocessing: PreprocessingSpec | None = Field(
        default=None,
        description="Overrides of the inferred data preparation (column types, imputation, "
        "encoding, scaling, dropped columns, duplicate rows); see docs/trainer.md.",
    )
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Held-out evaluation."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of the training container."
    )
    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Retries after a failed attempt (0 = a single attempt).",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Longest a run may take, across all its attempts, before it fails with "
        "DeadlineExceeded.",
    )
    volumes: list[VolumeMount] = Field(
        default_factory=list,
        max_length=8,
        description="PersistentVolumeClaims to mount, for file:// datasets and outputs.",
    )
    output: OutputSpec = Field(
        default_factory=OutputSpec, description="Artifact location and S3 access."
    )
    registration: RegistrationPolicy = Field(
        default_factory=RegistrationPolicy,
        description="Gates the new ModelVersion must pass to be approved.",
    )
    triggers: Triggers | None = Field(
        default=None,
        description="Retraining triggers; without them the job runs once.",
    )
    search: SearchSpec | None = Field(
        default=None,
        description="Hyperparameter search: each run tries these parameters in trial pods, "
        "then trains the best once more on the whole training split (docs/training.md).",
    )

    @model_validator(mode="after")
    def _estimator_or_command(self) -> TrainingJobSpec:
        if (self.estimator is None) == (self.command is None):
            raise ValueError("spec: set exactly one of spec.estimator or spec.command")
        if self.estimator is not None and not re.match(DOTTED_PATH, self.estimator):
            raise ValueError("spec.estimator must be a dotted Python path")
        if self.preprocessing is not None and any(
            c.name == self.dataset.target for c in self.preprocessing.columns
        ):
            raise ValueError(
                "spec.preprocessing.columns: the target column is not prepared as a feature"
            )
        fairness = self.registration.fairness
        if fairness is not None and fairness.sensitive_column != self.dataset.sensitive_column:
            raise ValueError(
                "spec.registration.fairness.sensitiveColumn must equal spec.dataset.sensitiveColumn"
            )
        if self.search is not None:
            if self.estimator is None:
                raise ValueError(
                    "spec.search needs spec.estimator (a custom command does not run trials)"
                )
            for parameter in self.search.parameters:
                if parameter.name in self.params:
                    raise ValueError(
                        f"spec.search.parameters[name={parameter.name}] is also set in "
                        "spec.params: a searched parameter takes its values from the search"
                    )
        self._known_param_names()
        return self

    def _known_param_names(self) -> None:
        """Refuse a name every trial pod would refuse (InvalidParams), before any pod runs."""
        known = ESTIMATOR_PARAMS.get(self.estimator or "")
        if known is None:  # a custom command, or not allow-listed: the trainer says why
            return
        named = [(f"spec.params.{name}", name) for name in self.params]
        if self.search is not None:
            named += [
                (f"spec.search.parameters[name={p.name}]", p.name) for p in self.search.parameters
            ]
        for field, name in named:
            if name not in known:
                raise ValueError(_unknown_param(field, name, str(self.estimator), known))


def _unknown_param(field: str, name: str, estimator: str, known: frozenset[str]) -> str:
    class_name = estimator.rpartition(".")[2]
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"its parameters: {', '.join(sorted(known))}"
    return f"{field}: {class_name} has no parameter {name} ({hint})"


class RunRecord(KilnModel):
    """One numbered run of a TrainingJob."""

    run: int = Field(ge=1, description="Run number, starting at 1.")
    phase: TrainingPhase = Field(description="Phase of this run.")
    trigger: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="What started the run: create, schedule, datasetChange, spec, manual.",
    )
    attempts: int = Field(default=0, ge=0, description="Pods started for this run.")
    start_time: datetime | None = Field(default=None, description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    pod: str | None = Field(default=None, max_length=253, description="Pod of the latest attempt.")
    next_attempt_time: datetime | None = Field(
        default=None, description="When the next attempt may start (exponential backoff)."
    )
    reason: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT, description="Why it failed."
    )
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE_LENGTH, description="Details of the outcome."
    )
    model_version: ModelVersionName | None = Field(
        default=None, description="The ModelVersion the run produced."
    )
    search: SearchStatus | None = Field(
        default=None, description="The run's hyperparameter search (spec.search)."
    )
    progress: Progress | None = Field(
        default=None, description="Trials done, running and failed, best objective, ETA."
    )
    trainer: TrainerProgress | None = Field(
        default=None,
        description="The trainer's phases (load, fit, evaluate, upload) in the latest "
        "attempt's pod (a search: the final training's).",
    )


class TrainingJobStatus(KilnModel):
    """Observed state of a TrainingJob."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status reflects."
    )
    phase: TrainingPhase | None = Field(default=None, description="Phase of the current run.")
    run: int = Field(default=0, ge=0, description="Number of the current (or last) run.")
    attempts: int = Field(default=0, ge=0, description="Pods started for the current run.")
    current_pod: str | None = Field(
        default=None, max_length=253, description="Name of the pod of the current attempt."
    )
    start_time: datetime | None = Field(default=None, description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    next_attempt_time: datetime | None = Field(
        default=None, description="When the next retry may start (exponential backoff)."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Evaluation metrics of the last successful run."
    )
    model_version: ModelVersionName | None = Field(
        default=None, description="The ModelVersion produced by the last successful run."
    )
    dataset_digest: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Last observed dataset digest or ETag (for the dataset-change trigger).",
    )
    last_schedule_time: datetime | None = Field(
        default=None,
        description="Last cron time handled: a run started, or was skipped "
        "(concurrencyPolicy Forbid, suspend).",
    )
    trained_spec_hash: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Hash of the spec, triggers excluded, that the newest run trained with: "
        "editing only spec.triggers (schedule, suspend…) starts no run.",
    )
    retrain_handled: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="The last kiln.dev/retrain value handled (a run started, or it was "
        "skipped), recorded in the same status write as its effect so a crash never runs it "
        "twice.",
    )
    runs: list[RunRecord] = Field(
        default_factory=list,
        max_length=256,
        description="Recent runs, newest last, pruned by the history limits.",
    )
    progress: Progress | None = Field(
        default=None, description="The newest run's search progress (spec.search)."
    )
    trainer: TrainerProgress | None = Field(
        default=None, description="The newest run's trainer phases (runs[].trainer)."
    )
    conditions: Conditions


class TrainingJob(KilnModel):
    """A TrainingJob object as stored by the apiserver."""

    api_version: Literal["kiln.dev/v1alpha1"] = Field(
        default="kiln.dev/v1alpha1", description="API version."
    )
    kind: Literal["TrainingJob"] = Field(default="TrainingJob", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")
    spec: TrainingJobSpec = Field(description="Desired state.")
    status: TrainingJobStatus = Field(
        default_factory=TrainingJobStatus, description="Observed state."
    )


__all__ = [
    "MAX_NAME_LENGTH",
    "ApprovalMode",
    "ConcurrencyPolicy",
    "DatasetChangeTrigger",
    "DatasetSpec",
    "EvaluationSpec",
    "FairnessGate",
    "LocalObjectReference",
    "MetricThreshold",
    "NotWorseThanApproved",
    "OutputSpec",
    "RegistrationPolicy",
    "RunRecord",
    "S3CredentialsReference",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "TrainingPhase",
    "Triggers",
]
