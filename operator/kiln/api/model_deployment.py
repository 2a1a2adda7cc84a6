"""ModelDeployment: serve a ModelVersion and roll new ones out as analysed canaries."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from kiln.api.cel import at_least_one_bound, min_le_max, rule, rules
from kiln.api.common import (
    DNS_LABEL_PATTERN,
    MAX_MESSAGE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SHORT_TEXT,
    Conditions,
    KilnModel,
    ObjectMeta,
    ResourceRequirements,
)
from kiln.api.fields import ContainerImage, ModelName, ModelVersionName
from kiln.api.monitoring import DriftCheck, MonitoringSpec, MonitoringStatus
from kiln.api.training_job import S3CredentialsReference

DeploymentPhase = Literal["Progressing", "Promoted", "RolledBack", "Paused", "Failed"]
AnalysisOutcome = Literal["Successful", "Failed", "Inconclusive", "Error"]

MAX_CANARY_STEPS = 20
MAX_CHECKS = 16
MAX_ANALYSIS_RESULTS = 64


class MetricCheck(KilnModel):
    """A user-defined Prometheus check run at every canary step."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            at_least_one_bound("spec.canary.checks[]"),
            min_le_max("spec.canary.checks[]"),
        )
    )

    name: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=DNS_LABEL_PATTERN,
        description="Name of the check, shown in status.analysis.",
    )
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL template returning one number. `{{ selector }}` is replaced by "
        "the label matchers of the track being measured (canary, or stable for "
        "relativeToStable), `{{ interval }}` by the analysis window, `{{ namespace }}` and "
        "`{{ name }}` by the ModelDeployment's.",
    )
    min: float | None = Field(default=None, description="Lowest passing value (inclusive).")
    max: float | None = Field(default=None, description="Highest passing value (inclusive).")
    relative_to_stable: bool = Field(
        default=False,
        description="When true the bounds apply to (canary value - stable value).",
    )
    min_requests: int | None = Field(
        default=None,
        ge=0,
        description="Canary requests needed in the window before this check counts "
        "(fewer = Inconclusive); defaults to spec.canary.minRequests.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> MetricCheck:
        if self.min is None and self.max is None:
            raise ValueError("spec.canary.checks[]: set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("spec.canary.checks[]: min must be <= max")
        return self


class ErrorRateCheck(KilnModel):
    """Built-in check: share of canary requests answered with a 5xx."""

    enabled: bool = Field(default=True, description="Run this check.")
    max_ratio: float = Field(
        default=0.01, ge=0, le=1, description="Highest passing 5xx ratio (0..1)."
    )


class LatencyCheck(KilnModel):
    """Built-in check: a latency quantile of the canary."""

    enabled: bool = Field(default=True, description="Run this check.")
    quantile: float = Field(default=0.99, gt=0, lt=1, description="Quantile, e.g. 0.99.")
    max_seconds: float = Field(default=0.5, gt=0, description="Highest passing latency.")


class BuiltinChecks(KilnModel):
    """Checks that every canary gets unless switched off."""

    error_rate: ErrorRateCheck = Field(default_factory=ErrorRateCheck, description="5xx ratio.")
    latency: LatencyCheck = Field(default_factory=LatencyCheck, description="Latency quantile.")
    drift: DriftCheck = Field(
        default_factory=DriftCheck,
        description="Canary predictions vs stable's, canary inputs vs its baseline (PSI).",
    )


class CanarySpec(KilnModel):
    """Progressive delivery of a new version, analysed on Prometheus metrics."""

    steps: list[int] = Field(
        default_factory=lambda: [10, 50],
        min_length=1,
        max_length=MAX_CANARY_STEPS,
        description="Canary traffic weights in percent, strictly increasing, each in 1..100. "
        "After the last step the canary is promoted.",
        json_schema_extra=rules(
            rule(
                "self.all(w, w >= 1 && w <= 100)",
                "spec.canary.steps: every weight must be between 1 and 100",
            ),
            rule(
                "self.isSorted() && self.all(w, self.exists_one(v, v == w))",
                "spec.canary.steps: weights must be strictly increasing",
            ),
        ),
    )
    interval_seconds: int = Field(
        default=60, ge=5, le=86400, description="Time spent at each step before analysis."
    )
    min_requests: int = Field(
        default=20,
        ge=0,
        description="Canary requests needed in the window before a check counts.",
    )
    checks: list[MetricCheck] = Field(
        default_factory=list, max_length=MAX_CHECKS, description="User-defined checks."
    )
    builtin_checks: BuiltinChecks = Field(
        default_factory=BuiltinChecks, description="Built-in error-rate and latency checks."
    )
    failure_limit: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Failed analyses tolerated; one more rolls back.",
    )
    inconclusive_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Inconclusive analyses (no data, Prometheus unreachable) tolerated; one "
        "more pauses the rollout. Inconclusive is never a pass.",
    )
    progress_deadline_seconds: int = Field(
        default=3600,
        ge=30,
        description="Longest a rollout may take before it fails.",
    )
    paused: bool = Field(default=False, description="Hold the rollout at its current step.")

    @model_validator(mode="after")
    def _steps(self) -> CanarySpec:
        if any(w < 1 or w > 100 for w in self.steps):
            raise ValueError("spec.canary.steps: every weight must be between 1 and 100")
        if any(b <= a for a, b in itertools.pairwise(self.steps)):
            raise ValueError("spec.canary.steps: weights must be strictly increasing")
        return self


class GatewayParentReference(KilnModel):
    """A Gateway API parent (a Gateway listener) for the managed HTTPRoute."""

    name: str = Field(min_length=1, max_length=253, description="Gateway name.")
    namespace: str | None = Field(
        default=None, max_length=MAX_NAME_LENGTH, description="Gateway namespace."
    )
    section_name: str | None = Field(
        default=None, max_length=MAX_NAME_LENGTH, description="Listener name."
    )


class HTTPRouteSpec(KilnModel):
    """The HTTPRoute whose backend weights the operator sets."""

    name: str | None = Field(
        default=None,
        max_length=253,
        description="Name of the managed HTTPRoute; the ModelDeployment's name when omitted.",
    )
    parent_refs: list[GatewayParentReference] = Field(
        min_length=1, max_length=16, description="Gateways the route attaches to."
    )
    hostnames: list[str] = Field(
        default_factory=list, max_length=16, description="Hostnames the route matches."
    )


class GatewaySpec(KilnModel):
    """Weight traffic exactly with Gateway API instead of by replica ratio."""

    http_route: HTTPRouteSpec = Field(description="The managed HTTPRoute.")


class ArtifactStoreAccess(KilnModel):
    """How the server pods reach s3:// artifacts (credentials by Secret reference only)."""

    s3_endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="S3 endpoint URL for S3-compatible stores.",
    )
    credentials_secret_ref: S3CredentialsReference | None = Field(
        default=None, description="Secret with the S3 access key id and secret access key."
    )


class ModelDeploymentSpec(KilnModel):
    """Which version to serve, and how to roll a new one out."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "has(self.modelVersion) != (has(self.followLatestApproved) && "
                "self.followLatestApproved)",
                "spec: set exactly one of spec.modelVersion or spec.followLatestApproved: true",
            ),
            rule(
                "!has(self.modelVersion) || self.modelVersion.startsWith(self.model + '-v')",
                "spec.modelVersion must be a version of spec.model (<model>-v<N>)",
            ),
        )
    )

    model: ModelName
    model_version: ModelVersionName | None = Field(
        default=None, description="Serve exactly this ModelVersion."
    )
    follow_latest_approved: bool | None = Field(
        default=None,
        description="Serve the newest Approved version of spec.model; a newly Approved "
        "version starts a canary by itself.",
    )
    replicas: int = Field(default=2, ge=1, le=100, description="Server pods of the stable track.")
    image: ContainerImage | None = Field(
        default=None, description="Model server image; defaults from the operator config."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of each server container."
    )
    allow_pickle: bool = Field(
        default=False,
        description="Let the server load pickle artifacts (unsafe; skops is always allowed).",
    )
    canary: CanarySpec | None = Field(
        default=None,
        description="Progressive delivery; without it a new version replaces the old at once.",
    )
    gateway: GatewaySpec | None = Field(
        default=None,
        description="Gateway API routing; weights are realised by replica ratio when absent.",
    )
    artifact_store: ArtifactStoreAccess | None = Field(
        default=None, description="S3 endpoint and credentials the server pods use."
    )
    monitoring: MonitoringSpec | None = Field(
        default=None,
        description="Drift against the training baseline, data capture and live quality.",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> ModelDeploymentSpec:
        if (self.model_version is not None) == bool(self.follow_latest_approved):
            raise ValueError(
                "spec: set exactly one of spec.modelVersion or spec.followLatestApproved: true"
            )
        if self.model_version is not None and not self.model_version.startswith(f"{self.model}-v"):
            raise ValueError("spec.modelVersion must be a version of spec.model")
        return self


class AnalysisResult(KilnModel):
    """One check evaluated at one step."""

    check: str = Field(max_length=MAX_SHORT_TEXT, description="Check name.")
    step: int = Field(ge=0, description="Step index the check ran at.")
    outcome: AnalysisOutcome = Field(description="Successful, Failed, Inconclusive or Error.")
    value: float | None = Field(default=None, description="Measured value (canary).")
    stable_value: float | None = Field(default=None, description="Stable value, if relative.")
    min: float | None = Field(default=None, description="Lowest passing value.")
    max: float | None = Field(default=None, description="Highest passing value.")
    requests: float | None = Field(default=None, description="Canary requests in the window.")
    message: str = Field(default="", max_length=MAX_MESSAGE_LENGTH, description="Details.")
    time: datetime | None = Field(default=None, description="When it was evaluated.")


class HandledCommand(KilnModel):
    """A one-shot command annotation the operator has acted on (a list entry rather than a
    map: a status merge patch replaces lists whole, so an entry can go)."""

    annotation: str = Field(max_length=MAX_SHORT_TEXT, description="The annotation's key.")
    value: str = Field(max_length=MAX_SHORT_TEXT, description="Its value when acted on.")


class ModelDeploymentStatus(KilnModel):
    """Observed state of a ModelDeployment."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status reflects."
    )
    phase: DeploymentPhase | None = Field(default=None, description="Rollout phase.")
    stable_version: str | None = Field(
        default=None, max_length=253, description="Version served by the stable track."
    )
    canary_version: str | None = Field(
        default=None, max_length=253, description="Version under analysis, if any."
    )
    target_version: str | None = Field(
        default=None,
        max_length=253,
        description="The version the deployment is converging to (explicit or latest Approved).",
    )
    canary_weight: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Effective canary traffic share in percent (replica ratio or route weight).",
    )
    step_weight: int = Field(
        default=0, ge=0, le=100, description="Weight the current step asks for, in percent."
    )
    current_step: int = Field(default=0, ge=0, description="Index into spec.canary.steps.")
    step_started_time: datetime | None = Field(
        default=None, description="When the current step began."
    )
    rollout_started_time: datetime | None = Field(
        default=None, description="When the current rollout began (progress deadline)."
    )
    last_analysis_time: datetime | None = Field(
        default=None, description="When the last analysis of this rollout ran."
    )
    last_analysis_outcome: AnalysisOutcome | None = Field(
        default=None, description="Overall outcome of the last analysis."
    )
    paused_time: datetime | None = Field(
        default=None,
        description="When a person paused the rollout (the progress deadline does not run "
        "while paused).",
    )
    failed_analyses: int = Field(default=0, ge=0, description="Failed analyses so far.")
    inconclusive_analyses: int = Field(
        default=0, ge=0, description="Inconclusive analyses in a row (reset by a success)."
    )
    failed_version: str | None = Field(
        default=None,
        max_length=253,
        description="Version that was rolled back or failed; not retried until a newer "
        "version, a spec change or `kiln.dev/retry`.",
    )
    reason: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="CamelCase reason of the last outcome (e.g. AnalysisFailed, "
        "IntegrityError, Aborted, ProgressDeadlineExceeded, InconclusiveAnalysis).",
    )
    stable_replicas: int = Field(default=0, ge=0, description="Replicas of the stable track.")
    canary_replicas: int = Field(default=0, ge=0, description="Replicas of the canary track.")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE_LENGTH, description="Why the phase is what it is."
    )
    analysis: list[AnalysisResult] = Field(
        default_factory=list,
        max_length=MAX_ANALYSIS_RESULTS,
        description="Recent analysis results with their values and thresholds, newest last.",
    )
    handled_commands: list[HandledCommand] = Field(
        default_factory=list,
        max_length=8,
        description="One-shot command annotations (kiln.dev/promote, abort, retry) already "
        "acted on, with the value acted on: recorded in the same status write as the "
        "command's effect, so a crash never loses or repeats one. An entry goes once its "
        "annotation is removed.",
    )
    monitoring: MonitoringStatus | None = Field(
        default=None, description="Drift, live quality and capture of the served version."
    )
    conditions: Conditions


class ModelDeployment(KilnModel):
    """A ModelDeployment object as stored by the apiserver."""

    api_version: Literal["kiln.dev/v1alpha1"] = Field(
        default="kiln.dev/v1alpha1", description="API version."
    )
    kind: Literal["ModelDeployment"] = Field(default="ModelDeployment", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")
    spec: ModelDeploymentSpec = Field(description="Desired state.")
    status: ModelDeploymentStatus = Field(
        default_factory=ModelDeploymentStatus, description="Observed state."
    )


__all__ = [
    "MAX_SHORT_TEXT",
    "AnalysisOutcome",
    "AnalysisResult",
    "ArtifactStoreAccess",
    "BuiltinChecks",
    "CanarySpec",
    "DeploymentPhase",
    "ErrorRateCheck",
    "GatewayParentReference",
    "GatewaySpec",
    "HTTPRouteSpec",
    "HandledCommand",
    "LatencyCheck",
    "MetricCheck",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
]
