"""ModelVersion: an immutable registry entry with lineage and an approval decision."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from kiln.api.cel import rule, rules
from kiln.api.common import (
    MAX_LIST_ITEMS,
    MAX_MESSAGE_LENGTH,
    MAX_SHORT_TEXT,
    MAX_URI_LENGTH,
    Conditions,
    KilnModel,
    ObjectMeta,
    ObjectReference,
)
from kiln.api.fields import ColumnName, ModelName, Sha256

ApprovalState = Literal["Pending", "Approved", "Rejected"]
ArtifactFormat = Literal["skops", "pickle"]


class Artifact(KilnModel):
    """The serialized model, verified by digest before anyone loads it."""

    uri: str = Field(
        min_length=1,
        max_length=MAX_URI_LENGTH,
        description="Where the artifact is (s3://… or file://…).",
    )
    sha256: Sha256 = Field(description="SHA-256 of the artifact file.")
    format: ArtifactFormat = Field(
        default="skops",
        description="skops (safe, default) or pickle (refused by the server unless allowed).",
    )


ColumnKind = Literal["numeric", "boolean", "categorical", "datetime"]
# The spec's immutability rule (`self == oldSelf`) is costed by the apiserver over the
# largest spec the schema allows: 1024 features x these bounds must stay far inside the
# CEL budget, so the recorded categories are few and short (the artifact has them all).
MAX_RECORDED_CATEGORIES = 64
MAX_CATEGORY_LENGTH = 64


class FeatureSchema(KilnModel):
    """One raw input column of the model: what a request must send under this name."""

    name: ColumnName
    dtype: str = Field(
        default="float64", max_length=64, description="Column dtype as pandas names it."
    )
    type: ColumnKind | None = Field(
        default=None,
        description="numeric, boolean, categorical or datetime, as inferred by the trainer "
        "or set in spec.preprocessing (absent for models trained before preparation).",
    )
    nullable: bool | None = Field(
        default=None, description="Whether the training data had missing values here."
    )
    categories: list[Annotated[str, Field(max_length=MAX_CATEGORY_LENGTH)]] | None = Field(
        default=None,
        max_length=MAX_RECORDED_CATEGORIES,
        description="Categories seen in the training split (categorical columns; at most 64 "
        "of at most 64 characters are recorded here); others are served as unseen.",
    )
    categories_count: int | None = Field(
        default=None,
        ge=0,
        description="How many categories there are, when the list above is cut short.",
    )
    impute: str | None = Field(
        default=None, max_length=16, description="How missing values are filled."
    )
    fill_value: str | None = Field(
        default=None, max_length=MAX_CATEGORY_LENGTH, description="Constant used by impute."
    )
    encoder: str | None = Field(default=None, max_length=16, description="onehot or ordinal.")
    scaling: str | None = Field(default=None, max_length=16, description="standard or minmax.")
    date_parts: list[Annotated[str, Field(max_length=16)]] | None = Field(
        default=None, max_length=7, description="Parts a datetime column is parsed into."
    )


class InputSchema(KilnModel):
    """What the model expects at inference time, in column order."""

    # 1024: the trainer's 4 KiB report holds far fewer, and each feature may now carry
    # categories, so 4096 would weigh on the cost of the spec's `self == oldSelf` rule.
    features: list[FeatureSchema] = Field(
        default_factory=list, max_length=1024, description="Input columns, in order."
    )
    dropped: list[ColumnName] | None = Field(
        default=None,
        max_length=1024,
        description="Columns of the table the model does not use (dropped by "
        "spec.preprocessing or inferred as identifiers / empty).",
    )
    target: FeatureSchema | None = Field(default=None, description="The predicted column.")
    classes: list[Any] | None = Field(
        default=None,
        max_length=4096,
        description="Class labels of a classifier (strings or numbers), in the order of "
        "predict_proba.",
    )


class BaselineReference(KilnModel):
    """The training profile (`baseline.json`, kiln.contract.monitoring.Baseline) that drift
    is measured against, verified by digest wherever it is read, like the artifact."""

    uri: str = Field(
        min_length=1, max_length=MAX_URI_LENGTH, description="Where the baseline is (s3://…)."
    )
    sha256: Sha256 = Field(description="SHA-256 of the baseline file.")


class TrainingData(KilnModel):
    """The exact data the model was trained on."""

    uri: str = Field(min_length=1, max_length=MAX_URI_LENGTH, description="Dataset URI.")
    sha256: Sha256 = Field(description="Digest of the dataset as read by the trainer.")


class FairnessReport(KilnModel):
    """One metric per group of the sensitive column, evaluated on the test split."""

    column: ColumnName = Field(description="The sensitive column.")
    metric: str = Field(max_length=MAX_SHORT_TEXT, description="The metric compared.")
    gap: float | None = Field(
        default=None, description="Best group minus worst group; absent with < 2 groups."
    )
    groups: dict[str, float] = Field(
        default_factory=dict,
        description="group -> metric value.",
        json_schema_extra={"maxProperties": 256},
    )


class ModelVersionSource(ObjectReference):
    """The TrainingJob run that produced this version."""

    run: int | None = Field(default=None, ge=1, description="Run number of the TrainingJob.")


class ModelVersionSpec(KilnModel):
    """Immutable facts about a trained model."""

    model: ModelName
    version: int = Field(ge=1, description="Version number N in `<model>-v<N>`.")
    artifact: Artifact = Field(description="The serialized model.")
    framework: str = Field(
        default="scikit-learn", max_length=MAX_SHORT_TEXT, description="ML framework."
    )
    library_versions: dict[str, Annotated[str, Field(max_length=MAX_SHORT_TEXT)]] = Field(
        default_factory=dict,
        description="Versions of the libraries the model was trained with "
        "(python, sklearn, numpy, …).",
        json_schema_extra={"maxProperties": 64},
    )
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Evaluation metrics on the held-out split.",
        json_schema_extra={"maxProperties": 64},
    )
    fairness: FairnessReport | None = Field(
        default=None, description="Per-group metrics on the sensitive column."
    )
    input_schema: InputSchema = Field(
        default_factory=InputSchema, description="Inputs the model expects."
    )
    training_data: TrainingData | None = Field(default=None, description="Training data.")
    baseline: BaselineReference | None = Field(
        default=None,
        description="Profile of the training data and held-out predictions that serving "
        "drift is measured against (absent for versions trained before monitoring).",
    )
    source: ModelVersionSource | None = Field(
        default=None, description="The TrainingJob (namespace/name/uid/run) that produced it."
    )


class ApprovalCheck(KilnModel):
    """One gate of the registration policy, with the values it compared."""

    name: str = Field(
        max_length=MAX_SHORT_TEXT,
        description="Which gate: threshold/<metric>, notWorseThanApproved/<metric>, "
        "fairness/<column>/<metric>.",
    )
    passed: bool = Field(description="Whether the gate passed.")
    metric: str | None = Field(default=None, max_length=MAX_SHORT_TEXT, description="Metric.")
    value: float | None = Field(default=None, description="Observed value (absent = missing).")
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    baseline: float | None = Field(
        default=None, description="The Approved version's value (notWorseThanApproved)."
    )
    baseline_version: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT, description="The version compared against."
    )
    message: str = Field(default="", max_length=MAX_MESSAGE_LENGTH, description="Explanation.")


class Approval(KilnModel):
    """The approval decision, automatic (registration policy) or by a person."""

    state: ApprovalState = Field(default="Pending", description="Pending, Approved or Rejected.")
    by: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Who decided: `kiln-operator` for the policy, else the user.",
    )
    at: datetime | None = Field(default=None, description="When the decision was made.")
    reason: str | None = Field(
        default=None, max_length=MAX_MESSAGE_LENGTH, description="Why, in words."
    )
    checks: list[ApprovalCheck] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Every gate of the policy with its values.",
    )


class ModelVersionStatus(KilnModel):
    """Observed state of a ModelVersion."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status reflects."
    )
    approval: Approval = Field(default_factory=Approval, description="Approval decision.")
    headline_metric: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="The first evaluation metric as `name=value`, for `kubectl get`.",
    )
    conditions: Conditions


class ModelVersion(KilnModel):
    """A ModelVersion object as stored by the apiserver."""

    # No CEL rule ties metadata.name to <model>-v<version>: the apiserver estimates
    # metadata.name as unbounded, so any rule reading it exceeds the CRD cost budget.
    # The operator is the one that names versions (core.registry).

    api_version: Literal["kiln.dev/v1alpha1"] = Field(
        default="kiln.dev/v1alpha1", description="API version."
    )
    kind: Literal["ModelVersion"] = Field(default="ModelVersion", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")
    spec: ModelVersionSpec = Field(
        description="Immutable facts about the model.",
        json_schema_extra=rules(
            rule("self == oldSelf", "spec is immutable: a ModelVersion never changes")
        ),
    )
    status: ModelVersionStatus = Field(
        default_factory=ModelVersionStatus, description="Observed state."
    )


def version_name(model: str, version: int) -> str:
    """`<model>-v<N>`, the only valid name of a ModelVersion."""
    return f"{model}-v{version}"


__all__ = [
    "MAX_MESSAGE_LENGTH",
    "Approval",
    "ApprovalCheck",
    "ApprovalState",
    "Artifact",
    "FairnessReport",
    "FeatureSchema",
    "InputSchema",
    "ModelVersion",
    "ModelVersionSource",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "TrainingData",
    "version_name",
]
