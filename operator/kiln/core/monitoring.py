"""Continuous monitoring of a ModelDeployment's stable track, pure: observations -> status,
conditions and Events.

`evaluate` turns what the controller observed over one window (bin counts from Prometheus,
the training baseline, capture counters, the join of captured predictions with labels)
into `status.monitoring` and two conditions:

- `Drifting` - True (`DriftDetected`) when more than `maxDriftingShare` of the judged
  features have PSI > `psiThreshold` (naming them with their PSI, the window and the row
  count), False (`NoDrift`) otherwise, Unknown when it cannot be said: `NotEnoughData`
  (fewer than `minSamples` values of every feature), `PrometheusUnavailable`,
  `QueryFailed`, `NoBaseline` / `BaselineUnavailable`.
- `QualityDegraded` - True (`BelowBound`) when the live metric is worse than the bound (the
  version's own test value minus `maxDrop`, or plus for lower-is-better metrics, or the
  absolute `min`), False (`WithinBound`), Unknown: `NotEnoughData` (fewer than
  `minLabelled` labelled predictions), `CaptureOff`, `CaptureUnavailable`,
  `NoTrainingMetric`, `MetricNotMeasured`.

A disabled check removes its condition. `transition_events` derives the Events from the
stored status and the new one (never from memory), so a pass that is killed after the
status write and run again sees no change and posts nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kiln.api.common import Condition, ConditionStatus
from kiln.api.model_version import ModelVersion
from kiln.api.monitoring import (
    CaptureStatus,
    DriftStatus,
    MonitoringSpec,
    MonitoringStatus,
    QualityStatus,
)
from kiln.api.wire import (
    BELOW_BOUND,
    CAPTURE_OFF,
    CAPTURE_UNAVAILABLE,
    DRIFT_DETECTED,
    DRIFTING,
    EVENT_DRIFT_DETECTED,
    EVENT_DRIFT_RESOLVED,
    EVENT_DRIFT_UNKNOWN,
    EVENT_NO_DRIFT,
    EVENT_QUALITY_DEGRADED,
    EVENT_QUALITY_OK,
    EVENT_QUALITY_RECOVERED,
    EVENT_QUALITY_UNKNOWN,
    METRIC_NOT_MEASURED,
    MONITORING_ERROR,
    NO_BASELINE,
    NO_DRIFT,
    NO_TRAINING_METRIC,
    NOT_ENOUGH_DATA,
    PROMETHEUS_UNAVAILABLE,
    QUALITY_DEGRADED,
    QUERY_FAILED,
    WITHIN_BOUND,
)
from kiln.contract.monitoring import Baseline
from kiln.core import drift as dr
from kiln.core import quality as ql
from kiln.core.analysis import QueryStatus
from kiln.core.canary import Event, TrackObservation
from kiln.core.conditions import find, remove_condition, set_condition

MONITORED_CONDITIONS = (DRIFTING, QUALITY_DEGRADED)
MAX_JOIN_RECORDS = 200_000  # records (predictions + labels) one evaluation reads at most
MAX_NAMED_FEATURES = 5  # features named with their PSI in a condition message


# -- observations ------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionFacts:
    """What the served ModelVersion says about itself."""

    name: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    headline: str | None = None  # status.headlineMetric, `name=value`
    classes: Sequence[Any] | None = None
    baseline: Baseline | None = None
    # Why there is no baseline (reason, message): not recorded, unreadable, wrong digest.
    baseline_problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class BinCounts:
    """`sum by (feature, bin) (increase(kiln_feature_bin_total{…}[window]))`."""

    status: QueryStatus
    counts: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class CaptureCounts:
    """`sum by (result) (increase(kiln_capture_records_total{…}[window]))`."""

    status: QueryStatus
    counts: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class JoinResult:
    """Captured predictions of the version joined to labels, or why they could not be read."""

    joined: ql.Joined | None = None
    records_read: int = 0
    capped: bool = False  # MAX_JOIN_RECORDS reached: the newest records were read
    error: str | None = None


@dataclass(frozen=True)
class Observation:
    version: VersionFacts
    bins: BinCounts | None = None  # None: drift not measured (off, or no baseline)
    capture: CaptureCounts | None = None  # None: capture off
    join: JoinResult | None = None  # None: quality not measured (off, or capture off)


@dataclass(frozen=True)
class Evaluation:
    monitoring: MonitoringStatus
    conditions: list[Condition]
    live: dict[str, float]  # every live metric measured (for the operator's gauges)


# -- what to observe and when ------------------------------------------------------------


def window(spec: MonitoringSpec) -> str:
    return f"{spec.window_seconds}s"


def wants_drift(spec: MonitoringSpec) -> bool:
    return spec.drift.enabled


def capture_on(spec: MonitoringSpec) -> bool:
    return spec.capture is not None and spec.capture.enabled


def wants_join(spec: MonitoringSpec) -> bool:
    return spec.quality.enabled and capture_on(spec)


def monitored_version(
    stable_version: str | None,
    stable: TrackObservation,
    versions: Mapping[str, ModelVersion],
) -> ModelVersion | None:
    """The version the stable track serves, None while nothing serves it yet (no stable
    version, its Deployment on another version, or no ready pod): nothing to measure, and
    a pod event brings the next pass."""
    version = versions.get(stable_version) if stable_version else None
    if version is None or stable.version != stable_version or stable.ready_replicas < 1:
        return None
    return version


def failed_observation(version: ModelVersion, why: str) -> Observation:
    """What an evaluation sees when observing failed unexpectedly: every measurement is
    Unknown with the error (monitoring never holds up serving; the next evaluation retries)."""
    return Observation(
        VersionFacts(
            name=version.metadata.name or "",
            metrics=dict(version.spec.metrics),
            classes=version.spec.input_schema.classes,
            baseline_problem=(MONITORING_ERROR, why),
        ),
        join=JoinResult(error=why),
    )


def due_in(
    spec: MonitoringSpec, status: MonitoringStatus | None, version: str, now: datetime
) -> float:
    """Seconds until the next evaluation (0: now). A version other than the one last
    measured is measured at once: the numbers on the status belong to a version."""
    if status is None or status.last_evaluated_time is None:
        return 0.0
    measured = {s.version for s in (status.drift, status.quality) if s is not None}
    if measured and measured != {version}:
        return 0.0
    elapsed = (now - status.last_evaluated_time).total_seconds()
    return max(0.0, spec.interval_seconds - elapsed)


def cleared(conditions: Sequence[Condition]) -> list[Condition]:
    """The conditions without the monitoring ones (monitoring off, nothing serving)."""
    result = list(conditions)
    for type_ in MONITORED_CONDITIONS:
        result = remove_condition(result, type_)
    return result


# -- evaluation --------------------------------------------------------------------------


def evaluate(
    spec: MonitoringSpec,
    obs: Observation,
    conditions: Sequence[Condition],
    now: datetime,
    generation: int | None = None,
) -> Evaluation:
    result = list(conditions)
    drift_status, drift_condition = _drift(spec, obs)
    if drift_condition is None:
        result = remove_condition(result, DRIFTING)
    else:
        result = set_condition(result, DRIFTING, *drift_condition, now, generation)
    quality_status, quality_condition, live = _quality(spec, obs)
    if quality_condition is None:
        result = remove_condition(result, QUALITY_DEGRADED)
    else:
        result = set_condition(result, QUALITY_DEGRADED, *quality_condition, now, generation)
    capture = _capture(spec, obs)
    parts = [f"version {obs.version.name} over {window(spec)}"]
    if drift_condition is not None:
        parts.append(f"drift: {drift_condition[2]}")
    if quality_condition is not None:
        parts.append(f"quality: {quality_condition[2]}")
    if capture.state != "Off":
        parts.append(
            f"capture {capture.state}: {_count(capture.written)} written, "
            f"{_count(capture.dropped)} dropped"
        )
    monitoring = MonitoringStatus(
        last_evaluated_time=now,
        drift=drift_status,
        quality=quality_status,
        capture=capture,
        message="; ".join(parts),
    )
    return Evaluation(monitoring=monitoring, conditions=result, live=live)


Verdict = tuple[ConditionStatus, str, str]


def _drift(spec: MonitoringSpec, obs: Observation) -> tuple[DriftStatus | None, Verdict | None]:
    if not wants_drift(spec):
        return None, None
    w = window(spec)
    status = DriftStatus(version=obs.version.name, window=w)
    facts = obs.version
    if facts.baseline is None:
        reason, message = facts.baseline_problem or (
            NO_BASELINE,
            f"ModelVersion {facts.name} records no training baseline (spec.baseline)",
        )
        return status, ("Unknown", reason, message)
    bins = obs.bins
    if bins is None or bins.status in ("unreachable", "error"):
        why = bins.message if bins is not None else "not queried"
        reason = (
            PROMETHEUS_UNAVAILABLE
            if bins is None or bins.status == "unreachable"
            else (QUERY_FAILED)
        )
        return status, ("Unknown", reason, f"input bins over {w} not measured: {why}")
    judgement = dr.judge(facts.baseline, bins.counts, spec.drift)
    status = status.model_copy(
        update={
            "samples": judgement.samples,
            "features": judgement.features,
            "drifting_features": judgement.drifting,
        }
    )
    threshold = f"threshold {spec.drift.psi_threshold:g}"
    total = len(judgement.features)
    if dr.is_drifting(judgement, spec.drift):
        named = [f for f in judgement.features if f.drifting][:MAX_NAMED_FEATURES]
        listed = ", ".join(f"{f.feature} PSI {f.psi:.3f}" for f in named)
        more = len(judgement.drifting) - len(named)
        if more > 0:
            listed += f" and {more} more"
        message = (
            f"{len(judgement.drifting)} of {judgement.judged} features drift over {w} "
            f"({judgement.samples} rows): {listed} ({threshold})"
        )
        return status, ("True", DRIFT_DETECTED, message)
    if judgement.judged == 0:
        message = (
            f"not enough data: {judgement.samples} rows over {w}, "
            f"{spec.drift.min_samples} needed per feature"
        )
        return status, ("Unknown", NOT_ENOUGH_DATA, message)
    top = next(f for f in judgement.features if f.samples >= spec.drift.min_samples)
    message = (
        f"no drift over {w} ({judgement.samples} rows, {judgement.judged} of {total} features "
        f"judged): highest PSI {top.feature} {top.psi:.3f} ({threshold})"
    )
    if judgement.drifting:
        message += (
            f"; {len(judgement.drifting)} drifting ({', '.join(judgement.drifting)}), not more "
            f"than maxDriftingShare {spec.drift.max_drifting_share:g}"
        )
    return status, ("False", NO_DRIFT, message)


def _quality(
    spec: MonitoringSpec, obs: Observation
) -> tuple[QualityStatus | None, Verdict | None, dict[str, float]]:
    q = spec.quality
    if not q.enabled:
        return None, None, {}
    w = window(spec)
    facts = obs.version
    classifier = ql.is_classifier(facts.metrics, facts.classes)
    metric = ql.choose_metric(q.metric, facts.metrics, facts.headline, classifier)
    training = facts.metrics.get(metric)
    limit = ql.bound(metric, training, q.max_drop, q.min) if metric in ql.LIVE_METRICS else None
    status = QualityStatus(version=facts.name, metric=metric, training=training, bound=limit)
    if not capture_on(spec):
        message = "live quality needs spec.monitoring.capture (captured predictions to join)"
        return status, ("Unknown", CAPTURE_OFF, message), {}
    if metric not in ql.LIVE_METRICS:
        message = (
            f"{metric} is not measured live (measured: {', '.join(ql.LIVE_METRICS)}); "
            "set spec.monitoring.quality.metric"
        )
        return status, ("Unknown", METRIC_NOT_MEASURED, message), {}
    if limit is None:
        message = (
            f"ModelVersion {facts.name} records no {metric} to compare with; "
            "set spec.monitoring.quality.min"
        )
        return status, ("Unknown", NO_TRAINING_METRIC, message), {}
    join = obs.join
    if join is None or join.error is not None or join.joined is None:
        why = join.error if join is not None and join.error else "not read"
        return status, ("Unknown", CAPTURE_UNAVAILABLE, f"captured records not read: {why}"), {}
    joined = join.joined
    live = ql.live_metrics(joined.pairs, classifier)
    labelled = len(joined.pairs)
    status = status.model_copy(
        update={
            "labelled": labelled,
            "captured": joined.captured,
            "label_delay_seconds": joined.label_delay_seconds,
            "live": live.get(metric),
        }
    )
    capped = f" (read capped at {MAX_JOIN_RECORDS} records)" if join.capped else ""
    if labelled < q.min_labelled or metric not in live:
        message = (
            f"not enough data: {labelled} labelled predictions over {w} "
            f"({joined.captured} captured), {q.min_labelled} needed{capped}"
        )
        return status, ("Unknown", NOT_ENOUGH_DATA, message), live
    value = live[metric]
    training_text = f"{training:g}" if training is not None else "n/a"
    delay = joined.label_delay_seconds
    numbers = (
        f"{metric} {value:g} live vs {training_text} training (bound {limit:g}) over {w}, "
        f"{labelled} labelled of {joined.captured} captured"
        + (f", median label delay {delay:g} s" if delay is not None else "")
        + capped
    )
    if ql.worse_than(metric, value, limit):
        return status, ("True", BELOW_BOUND, numbers), live
    return status, ("False", WITHIN_BOUND, numbers), live


def _capture(spec: MonitoringSpec, obs: Observation) -> CaptureStatus:
    capture = spec.capture
    if capture is None or not capture.enabled:
        return CaptureStatus(state="Off")
    counts = obs.capture
    if counts is None or counts.status in ("unreachable", "error"):
        return CaptureStatus(state="Capturing", destination=capture.destination)
    written = float(counts.counts.get("written", 0.0))
    dropped = float(counts.counts.get("dropped", 0.0)) + float(counts.counts.get("failed", 0.0))
    return CaptureStatus(
        state="Degraded" if dropped > 0 else "Capturing",
        destination=capture.destination,
        written=round(written, 3),
        dropped=round(dropped, 3),
    )


def _count(value: float | None) -> str:
    """A counter's increase over the window, which Prometheus extrapolates to fractions,
    as the whole number of records it stands for."""
    return "?" if value is None else f"{round(value):d}"


# -- Events ------------------------------------------------------------------------------


def transition_events(
    before: Sequence[Condition],
    after: Sequence[Condition],
    before_monitoring: MonitoringStatus | None = None,
    after_monitoring: MonitoringStatus | None = None,
) -> list[Event]:
    """The Events for the monitoring conditions' changes from the stored status to the new.

    A change of status posts one Event (Warning for the bad states); while Drifting stays
    True a different set of drifting features posts DriftDetected again. Derived only from
    the two statuses, so re-running a pass whose status write landed posts nothing again.
    """
    events: list[Event] = []
    for type_ in MONITORED_CONDITIONS:
        old, new = find(before, type_), find(after, type_)
        if new is None:
            continue
        previous = old.status if old is not None else None
        if previous == new.status:
            if (
                type_ == DRIFTING
                and new.status == "True"
                and _drifting(before_monitoring) != _drifting(after_monitoring)
            ):
                events.append(Event("Warning", EVENT_DRIFT_DETECTED, new.message))
            continue
        events.append(_event(type_, previous, new))
    return events


def _drifting(status: MonitoringStatus | None) -> tuple[str, ...]:
    if status is None or status.drift is None:
        return ()
    return tuple(sorted(status.drift.drifting_features))


def _event(type_: str, previous: str | None, new: Condition) -> Event:
    message = new.message
    if type_ == DRIFTING:
        if new.status == "True":
            return Event("Warning", EVENT_DRIFT_DETECTED, message)
        if new.status == "False":
            reason = EVENT_DRIFT_RESOLVED if previous == "True" else EVENT_NO_DRIFT
            return Event("Normal", reason, message)
        return Event("Normal", EVENT_DRIFT_UNKNOWN, f"{new.reason}: {message}")
    if new.status == "True":
        return Event("Warning", EVENT_QUALITY_DEGRADED, message)
    if new.status == "False":
        reason = EVENT_QUALITY_RECOVERED if previous == "True" else EVENT_QUALITY_OK
        return Event("Normal", reason, message)
    return Event("Normal", EVENT_QUALITY_UNKNOWN, f"{new.reason}: {message}")
