"""Progressive delivery of a ModelDeployment as a pure state machine.

    step(spec, status, observations, now) -> Decision(actions, status, requeue_after, events)

Everything the rollout needs to continue lives in `status` (step, when it started, when
the last analysis ran, counters, the version that failed), so an operator restarted at any
moment resumes at the same step from the object alone. The handler observes the world
(Deployments, pods, ModelVersions, annotations, Prometheus) into `Observations`, calls
`step`, and applies the `Decision`: the level-based `actions` (each track's version and
replicas, route weights, consumed one-shot annotations), the new status and the Events.

Analysis is two-phase: when a step's interval has elapsed and the canary is ready, `step`
returns `Decision.analysis` (the PromQL to run) instead of deciding; the handler runs the
queries and calls `step` again with their results in `Observations.analysis` (and the
answers to its vector queries, the drift check's, in `Observations.vectors`).

Rules (see docs/canary.md):
- The first version goes straight to stable (there is nothing to compare it with); so does
  every new version when `spec.canary` is absent or the stable track has no ready pod.
- Each step sets the canary weight, waits `intervalSeconds`, then analyses. Successful:
  next step (after the last: promote). Failed: counted; more than `failureLimit` rolls back.
  Inconclusive or Error (no data, too few requests, Prometheus unreachable): counted in a
  row, never a pass; more than `inconclusiveLimit` pauses the rollout (phase Paused, reason
  InconclusiveAnalysis) while analysis keeps running, and the next Successful analysis
  resumes it.
- A canary pod that reports a fatal load error (IntegrityError, UntrustedArtifact,
  ModelError) fails the rollout at once with that reason. `progressDeadlineSeconds`
  bounds the whole rollout (time paused by a person does not count).
- Manual: annotation `kiln.dev/paused` (hold), `kiln.dev/promote`, `kiln.dev/abort` and
  `kiln.dev/retry` (one-shot; the handler removes them once acted upon).
- Promotion: stable <- the canary's version, canary scaled to 0. Rollback: canary scaled to
  0, stable untouched, `status.failedVersion` and `status.reason` say what and why; that
  version is not retried until `kiln.dev/retry`, a spec change, or a newer version.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from kiln.api.model_deployment import (
    MAX_ANALYSIS_RESULTS,
    CanarySpec,
    DeploymentPhase,
    HandledCommand,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from kiln.api.model_version import ModelVersion
from kiln.api.wire import (
    ABORT_ANNOTATION,
    PAUSED_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
)
from kiln.core import analysis as an
from kiln.core.conditions import mark_ready, mark_reconciling, mark_stalled
from kiln.core.failures import STALLED_RESYNC_SECONDS
from kiln.core.registry import latest_approved

# Load failures kiln-serve reports that no retry can fix.
RETRY_HINT = ". Retry with `kiln resume` (kiln.dev/retry), a spec change or a newer version"
FATAL_LOAD_REASONS = ("IntegrityError", "UntrustedArtifact", "ModelError", "ArtifactError")

WAIT_FOR_PODS_SECONDS = 2.0
STEADY_RESYNC_SECONDS = 300.0
PAUSED_RESYNC_SECONDS = 30.0

Track = Literal["stable", "canary"]
EventType = Literal["Normal", "Warning"]


# -- inputs ------------------------------------------------------------------------------


ONE_SHOT_ANNOTATIONS = (PROMOTE_ANNOTATION, ABORT_ANNOTATION, RETRY_ANNOTATION)


@dataclass(frozen=True)
class Commands:
    """Manual control, from annotations (or the `kiln` CLI, which sets them).

    `promote`, `abort` and `retry` are one-shot and true only while *pending*: present with
    a value the status does not record as handled (`status.handledCommands`). Acting on one
    records its value in the same status write as its effect; the annotation is removed
    only after that write, so a crash on either side neither loses nor repeats it.
    """

    paused: bool = False
    promote: bool = False
    abort: bool = False
    retry: bool = False
    # The one-shot annotations present, pending or not, with their values.
    present: Mapping[str, str] = field(default_factory=dict)


_FALSE = frozenset({"", "false", "0", "no", "off"})


def handled_commands(status: ModelDeploymentStatus) -> dict[str, str]:
    """The one-shot annotations the status records as acted on, with their values."""
    return {h.annotation: h.value for h in status.handled_commands}


def commands_from_annotations(
    annotations: Mapping[str, str], handled: Mapping[str, str] | None = None
) -> Commands:
    paused = annotations.get(PAUSED_ANNOTATION)
    present = {k: annotations[k] for k in ONE_SHOT_ANNOTATIONS if k in annotations}
    pending = {k for k, v in present.items() if (handled or {}).get(k) != v}
    return Commands(
        paused=paused is not None and paused.strip().lower() not in _FALSE,
        promote=PROMOTE_ANNOTATION in pending,
        abort=ABORT_ANNOTATION in pending,
        retry=RETRY_ANNOTATION in pending,
        present=present,
    )


@dataclass(frozen=True)
class Target:
    """The version the deployment should converge to, or why there is none."""

    version: str | None
    reason: str = ""  # NoApprovedVersion, ModelVersionNotFound, ModelVersionRejected
    message: str = ""


def resolve_target(md: ModelDeployment, versions: Sequence[ModelVersion]) -> Target:
    """The version to serve: the pinned one, or the newest Approved version of the model.

    A pinned version must exist and must not be Rejected (a Pending one is served: pinning
    is a person's explicit choice).
    """
    spec = md.spec
    if spec.model_version is not None:
        found = next((v for v in versions if v.metadata.name == spec.model_version), None)
        if found is None:
            return Target(
                None, "ModelVersionNotFound", f"ModelVersion {spec.model_version} does not exist"
            )
        if found.status.approval.state == "Rejected":
            return Target(
                None, "ModelVersionRejected", f"ModelVersion {spec.model_version} is Rejected"
            )
        return Target(found.metadata.name)
    newest = latest_approved(versions, spec.model)
    if newest is None:
        return Target(None, "NoApprovedVersion", f"no Approved ModelVersion of {spec.model} yet")
    return Target(newest.metadata.name)


def compares_canary_inputs(spec: ModelDeploymentSpec) -> bool:
    """Whether the canary's drift check compares its inputs with its own baseline (which
    the controller then reads for the analysis)."""
    drift = spec.canary.builtin_checks.drift if spec.canary else None
    return drift is not None and drift.enabled and drift.inputs


@dataclass(frozen=True)
class TrackObservation:
    """One track's Deployment as observed (absent Deployment: version None)."""

    version: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    rolled_out: bool = True  # controller caught up and every replica runs the template
    failure_reason: str | None = None  # e.g. IntegrityError (fatal load error of a pod)
    failure_message: str = ""

    def ready_at(self, version: str | None, replicas: int) -> bool:
        return (
            version is not None
            and self.version == version
            and self.rolled_out
            and self.ready_replicas >= replicas
        )


@dataclass(frozen=True)
class Observations:
    namespace: str
    name: str
    generation: int | None
    target: Target
    stable: TrackObservation = field(default_factory=TrackObservation)
    canary: TrackObservation = field(default_factory=TrackObservation)
    commands: Commands = field(default_factory=Commands)
    analysis: Mapping[str, an.QueryResult] | None = None
    # The answers to the plan's vector queries (the built-in drift check).
    vectors: Mapping[str, an.VectorResult] | None = None
    # The canary version's training shares per feature and bin (`an.feature_shares` of its
    # baseline) for the drift check's inputs part; None: not read (the message says why).
    canary_baseline: an.InputBaseline | None = None
    canary_baseline_message: str = ""


# -- outputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyTrack:
    """Make `<name>-<track>` run `version` with `replicas` pods (version None: scale to 0)."""

    track: Track
    version: str | None
    replicas: int


@dataclass(frozen=True)
class SetRouteWeights:
    stable: int
    canary: int


@dataclass(frozen=True)
class RemoveAnnotation:
    key: str


Action = ApplyTrack | SetRouteWeights | RemoveAnnotation


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    actions: list[Action]
    status: ModelDeploymentStatus
    requeue_after: float | None
    events: list[Event] = field(default_factory=list)
    analysis: an.AnalysisPlan | None = None  # run these queries, then call step again


# -- weights -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    stable: int
    canary: int
    weight: int  # effective canary share of traffic, percent


def split(total: int, weight: int, *, gateway: bool = False) -> Split:
    """Replicas of each track for a requested canary weight, and the weight achieved.

    Replica ratio (the default): the `total` pods are shared, so the achievable weights are
    k/total for k = 1..total-1 (plus 100 at a 100 step); the canary gets at least one pod
    and the stable at least one while the weight is below 100. With `total` = 1 the canary
    runs beside the one stable pod (50%). With a gateway the route weight is exact, the
    stable keeps all its pods and the canary gets a proportional share (at least one).
    """
    if weight <= 0:
        return Split(total, 0, 0)
    if gateway:
        return Split(total, max(1, math.ceil(total * weight / 100)), min(weight, 100))
    if weight >= 100:
        return Split(0, total, 100)
    if total == 1:
        return Split(1, 1, 50)
    canary = min(max(1, math.floor(total * weight / 100 + 0.5)), total - 1)
    stable = total - canary
    return Split(stable, canary, math.floor(100 * canary / total + 0.5))


def achievable_weights(total: int) -> list[int]:
    """The weights replica ratio can realise with `total` replicas (for docs and the CLI)."""
    return sorted({split(total, w).weight for w in range(1, 101)})


# -- pod failures ------------------------------------------------------------------------

_REASON_RE = re.compile(r"\b(" + "|".join(FATAL_LOAD_REASONS) + r")\b:?\s*(.*)")


def load_failure(texts: Sequence[str]) -> tuple[str, str] | None:
    """The first fatal load error in pod termination messages, log tails or Events.

    kiln-serve logs JSON lines (`{"msg": ..., "reason": "IntegrityError: ..."}`) and exits
    when the model cannot load; `FallbackToLogsOnError` puts that tail in the pod status.
    """
    for text in texts:
        for line in text.splitlines():
            candidates = [line]
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                candidates = [str(parsed.get("reason", "")), str(parsed.get("msg", ""))]
            for candidate in candidates:
                match = _REASON_RE.search(candidate)
                if match:
                    return match.group(1), match.group(0).strip()[:1024]
    return None


# -- the state machine -------------------------------------------------------------------


def step(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    obs: Observations,
    now: datetime,
) -> Decision:
    return _Machine(spec, status, obs, now).run()


class _Machine:
    def __init__(
        self,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        obs: Observations,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.st = status.model_copy(deep=True)
        self.obs = obs
        self.now = now
        self.events: list[Event] = []
        self.consumed: list[str] = []
        self.handled = handled_commands(status)
        self.requeue: float | None = None
        self.plan: an.AnalysisPlan | None = None
        self.condition: tuple[str, str, str] = ("ready", "Serving", "")

    # -- helpers -----------------------------------------------------------------------
    def consume(self, key: str) -> None:
        """Act on a one-shot command: its value is recorded in this pass's status write."""
        self.consumed.append(key)
        self.handled[key] = self.obs.commands.present.get(key, "")

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def wake(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def set_phase(self, phase: DeploymentPhase, message: str) -> None:
        self.st.phase = phase
        self.st.message = message

    @property
    def gateway(self) -> bool:
        return self.spec.gateway is not None

    @property
    def canary_spec(self) -> CanarySpec | None:
        return self.spec.canary

    # -- entry -------------------------------------------------------------------------
    def run(self) -> Decision:
        st, obs = self.st, self.obs
        previous_generation = st.observed_generation
        st.observed_generation = obs.generation
        if obs.commands.retry:
            self.consume(RETRY_ANNOTATION)
            if st.failed_version is not None:
                self.event("Normal", "Retry", f"retrying {st.failed_version} as asked")
            st.failed_version = None
        elif (
            previous_generation is not None
            and obs.generation is not None
            and previous_generation != obs.generation
            and st.failed_version is not None
        ):
            self.event("Normal", "Retry", f"spec changed: retrying {st.failed_version}")
            st.failed_version = None

        target = obs.target.version
        st.target_version = target
        if target is None:
            self.no_target()
        else:
            self.converge(target)
        # One-shot commands that did not apply (e.g. promote with no canary) are consumed
        # too, so they cannot fire later by surprise.
        for key, present in (
            (PROMOTE_ANNOTATION, obs.commands.promote),
            (ABORT_ANNOTATION, obs.commands.abort),
        ):
            if present and key not in self.consumed:
                self.consume(key)
                self.event("Normal", "CommandIgnored", f"{key}: no rollout in progress")
        return self.decision()

    def no_target(self) -> None:
        reason = self.obs.target.reason or "NoTargetVersion"
        message = self.obs.target.message or "no version to serve"
        if self.st.canary_version is not None:
            self.end_canary()
            self.event("Warning", "RolloutCancelled", f"{message}; canary removed")
        self.set_track_replicas(stable=self.spec.replicas if self.st.stable_version else 0)
        self.st.message = message
        self.st.reason = reason
        self.condition = ("stalled", reason, message)
        self.wake(STALLED_RESYNC_SECONDS)

    # -- convergence ---------------------------------------------------------------------
    def converge(self, target: str) -> None:
        st = self.st
        if st.stable_version is None:
            st.stable_version = target
            self.set_phase("Progressing", f"deploying {target}")
            st.reason = "Deploying"
            self.event("Normal", "Deploying", f"first version {target} goes to stable")

        if st.canary_version is not None and st.canary_version != target:
            old = st.canary_version
            self.end_canary()
            self.event("Normal", "Superseded", f"canary {old} superseded by {target}")
            if target == st.stable_version:
                self.set_phase("Promoted", f"back to {target}")

        if (
            st.canary_version is None
            and target != st.stable_version
            and target != st.failed_version
        ):
            if self.canary_spec is None or self.obs.stable.ready_replicas == 0:
                why = (
                    "no canary configured"
                    if self.canary_spec is None
                    else "the stable track has no ready pod to compare with"
                )
                self.event("Normal", "Replacing", f"{st.stable_version} -> {target} ({why})")
                st.stable_version = target
                st.reason = "Replacing"
                self.set_phase("Progressing", f"replacing stable with {target}: {why}")
            else:
                self.start_rollout(target)

        if st.canary_version is not None:
            if self.canary_spec is None:
                self.promote("CanaryDisabled", "spec.canary removed: promoting at once")
            else:
                self.rollout(self.canary_spec)
        if st.canary_version is None:
            if target == st.stable_version:
                self.steady(target)
            else:  # target is the version that failed: hold on the stable
                self.hold_failed()

    def hold_failed(self) -> None:
        st = self.st
        self.set_track_replicas(stable=self.spec.replicas)
        if st.phase not in ("RolledBack", "Failed"):
            st.phase = "Failed"
        reason = st.reason or "RolledBack"
        # The message written at rollback time says why; later passes keep it, so the
        # cause (a failed check, a digest mismatch…) stays visible for as long as we hold.
        if not st.message or not st.message.startswith(f"{st.failed_version} "):
            st.message = (
                f"{st.failed_version} {st.phase} ({reason}); stable stays on "
                f"{st.stable_version}{RETRY_HINT}"
            )
        self.condition = ("stalled", reason, st.message or "")
        self.wake(STALLED_RESYNC_SECONDS)

    def steady(self, target: str) -> None:
        st, stable = self.st, self.obs.stable
        self.set_track_replicas(stable=self.spec.replicas)
        if stable.failure_reason is not None and stable.version == target:
            if st.phase != "Failed" or st.reason != stable.failure_reason:
                self.event(
                    "Warning",
                    stable.failure_reason,
                    f"stable pods cannot load {target}: {stable.failure_message}",
                )
            st.phase = "Failed"
            st.reason = stable.failure_reason
            st.message = f"stable pods cannot load {target}: {stable.failure_message}"
            self.condition = ("stalled", stable.failure_reason, st.message)
            self.wake(STALLED_RESYNC_SECONDS)
            return
        if stable.ready_at(target, self.spec.replicas):
            if st.phase != "Promoted":
                self.event("Normal", "Serving", f"{target} serves all traffic")
            st.phase = "Promoted"
            st.reason = st.reason if st.reason in ("Promoted", "ManualPromotion") else "Serving"
            st.message = f"{target} serves all traffic on {self.spec.replicas} replicas"
            self.condition = ("ready", "Serving", st.message)
            self.wake(STEADY_RESYNC_SECONDS)
        else:
            if st.phase not in ("Promoted", "Progressing"):
                st.phase = "Progressing"
            st.message = f"rolling out {target}: {stable.ready_replicas}/{self.spec.replicas} ready"
            self.condition = ("reconciling", "RollingOut", st.message)
            self.wake(WAIT_FOR_PODS_SECONDS)

    # -- rollout -------------------------------------------------------------------------
    def start_rollout(self, target: str) -> None:
        st = self.st
        st.canary_version = target
        st.current_step = 0
        st.rollout_started_time = self.now
        st.step_started_time = self.now
        st.last_analysis_time = None
        st.last_analysis_outcome = None
        st.paused_time = None
        st.failed_analyses = 0
        st.inconclusive_analyses = 0
        st.analysis = []
        st.reason = "RolloutStarted"
        self.set_phase("Progressing", f"canary {target} started")
        self.event(
            "Normal", "RolloutStarted", f"canary {target} against stable {st.stable_version}"
        )

    def rollout(self, canary: CanarySpec) -> None:
        st, obs = self.st, self.obs
        version = st.canary_version
        assert version is not None
        st.current_step = min(st.current_step, len(canary.steps) - 1)
        if st.rollout_started_time is None:
            st.rollout_started_time = self.now
        if st.step_started_time is None:
            st.step_started_time = self.now

        if obs.commands.abort:
            self.consume(ABORT_ANNOTATION)
            self.rollback("RolledBack", "Aborted", f"aborted by a person at step {st.current_step}")
            return
        if obs.commands.promote:
            self.consume(PROMOTE_ANNOTATION)
            self.promote("ManualPromotion", f"promoted by a person at step {st.current_step}")
            return
        if obs.canary.failure_reason is not None and obs.canary.version == version:
            self.rollback(
                "Failed",
                obs.canary.failure_reason,
                f"canary pods cannot load {version}: {obs.canary.failure_message}",
            )
            return
        manually_paused = obs.commands.paused or canary.paused
        if not manually_paused:
            deadline = st.rollout_started_time + timedelta(seconds=canary.progress_deadline_seconds)
            if st.paused_time is not None:
                deadline += self.now - st.paused_time
            if self.now >= deadline:
                self.rollback(
                    "Failed",
                    "ProgressDeadlineExceeded",
                    f"not promoted within {canary.progress_deadline_seconds} s",
                )
                return

        weight = canary.steps[st.current_step]
        self.apply_weight(weight)

        if manually_paused:
            if st.paused_time is None:
                st.paused_time = self.now
                self.event("Normal", "Paused", f"paused by a person at step {st.current_step}")
            st.phase = "Paused"
            st.reason = "ManualPause"
            st.message = f"paused at step {st.current_step} (weight {st.canary_weight}%)"
            self.condition = ("reconciling", "Paused", st.message)
            self.wake(PAUSED_RESYNC_SECONDS)
            return
        if st.paused_time is not None:
            paused_for = self.now - st.paused_time
            st.rollout_started_time += paused_for
            st.step_started_time = self.now
            st.paused_time = None
            st.phase = "Progressing"
            st.reason = "Resumed"
            self.event("Normal", "Resumed", f"resumed at step {st.current_step}")

        if st.phase not in ("Progressing", "Paused"):
            st.phase = "Progressing"
        if not obs.canary.ready_at(version, st.canary_replicas):
            st.message = (
                f"step {st.current_step}: waiting for canary pods "
                f"({obs.canary.ready_replicas}/{st.canary_replicas} ready)"
            )
            self.progress_condition()
            self.wake(WAIT_FOR_PODS_SECONDS)
            return

        interval = timedelta(seconds=canary.interval_seconds)
        since = st.step_started_time
        if st.last_analysis_time is not None and st.last_analysis_time > since:
            since = st.last_analysis_time
        due = since + interval
        if self.now < due:
            st.message = (
                f"step {st.current_step}: weight {st.canary_weight}% "
                f"(asked {st.step_weight}%), analysis in {(due - self.now).total_seconds():.0f} s"
            )
            self.progress_condition()
            self.wake((due - self.now).total_seconds())
            return

        plan = an.plan(
            canary,
            namespace=obs.namespace,
            name=obs.name,
            model=self.spec.model,
            canary_version=version,
            stable_version=st.stable_version,
        )
        if obs.analysis is None:
            self.plan = plan
            self.progress_condition()
            self.wake(0)
            return
        self.analyse(canary, plan, obs.analysis)

    def progress_condition(self) -> None:
        st = self.st
        if st.phase == "Paused":
            reason = st.reason or "InconclusiveAnalysis"
            self.condition = ("stalled", reason, st.message or "")
        else:
            self.condition = ("reconciling", "CanaryProgressing", st.message or "")

    def analyse(
        self,
        canary: CanarySpec,
        plan: an.AnalysisPlan,
        results: Mapping[str, an.QueryResult],
    ) -> None:
        st = self.st
        verdict = an.evaluate(
            plan,
            results,
            step=st.current_step,
            now=self.now,
            vectors=self.obs.vectors,
            input_baseline=self.obs.canary_baseline,
            baseline_message=self.obs.canary_baseline_message,
        )
        st.analysis = [*st.analysis, *verdict.results][-MAX_ANALYSIS_RESULTS:]
        st.last_analysis_time = self.now
        st.last_analysis_outcome = verdict.outcome
        summary = verdict.summary()
        interval = float(canary.interval_seconds)
        if verdict.outcome == "Successful":
            st.inconclusive_analyses = 0
            self.event("Normal", "AnalysisSuccessful", f"step {st.current_step}: {summary}")
            if st.phase == "Paused":
                self.event("Normal", "Resumed", "analysis conclusive again")
            if st.current_step + 1 >= len(canary.steps):
                self.promote("Promoted", f"all {len(canary.steps)} steps passed analysis")
                return
            st.current_step += 1
            st.step_started_time = self.now
            st.phase = "Progressing"
            st.reason = "StepAdvanced"
            self.apply_weight(canary.steps[st.current_step])
            st.message = (
                f"step {st.current_step}: weight {st.canary_weight}% (asked {st.step_weight}%)"
            )
            self.event("Normal", "StepAdvanced", st.message)
            self.progress_condition()
            self.wake(interval)
            return
        if verdict.outcome == "Failed":
            st.failed_analyses += 1
            self.event(
                "Warning",
                "AnalysisFailed",
                f"step {st.current_step} ({st.failed_analyses}/{canary.failure_limit} "
                f"tolerated): {summary}",
            )
            if st.failed_analyses > canary.failure_limit:
                self.rollback("RolledBack", "AnalysisFailed", f"analysis failed: {summary}")
                return
            st.message = f"step {st.current_step}: analysis failed, retrying: {summary}"
            self.progress_condition()
            self.wake(interval)
            return
        # Inconclusive or Error: never a pass.
        st.inconclusive_analyses += 1
        self.event(
            "Warning",
            "AnalysisInconclusive" if verdict.outcome == "Inconclusive" else "AnalysisError",
            f"step {st.current_step} ({st.inconclusive_analyses} in a row, "
            f"{canary.inconclusive_limit} tolerated): {summary}",
        )
        if st.inconclusive_analyses > canary.inconclusive_limit:
            if st.phase != "Paused":
                self.event(
                    "Warning",
                    "InconclusiveAnalysis",
                    f"paused at step {st.current_step}: {st.inconclusive_analyses} inconclusive "
                    "analyses in a row; analysis continues and a success resumes",
                )
            st.phase = "Paused"
            st.reason = "InconclusiveAnalysis"
        st.message = f"step {st.current_step}: analysis {verdict.outcome}: {summary}"
        self.progress_condition()
        self.wake(interval)

    def apply_weight(self, weight: int) -> None:
        chosen = split(self.spec.replicas, weight, gateway=self.gateway)
        self.st.step_weight = weight
        self.st.canary_weight = chosen.weight
        self.st.stable_replicas = chosen.stable
        self.st.canary_replicas = chosen.canary

    def set_track_replicas(self, *, stable: int) -> None:
        self.st.stable_replicas = stable
        self.st.canary_replicas = 0
        self.st.canary_weight = 0
        self.st.step_weight = 0

    def end_canary(self) -> None:
        self.st.canary_version = None
        self.st.step_started_time = None
        self.st.paused_time = None
        self.set_track_replicas(stable=self.spec.replicas)

    def promote(self, reason: str, message: str) -> None:
        st = self.st
        version = st.canary_version
        previous = st.stable_version
        st.stable_version = version
        self.end_canary()
        st.phase = "Promoted"
        st.reason = reason
        st.message = f"{version} promoted ({message})"
        self.event("Normal", reason, f"{version} promoted over {previous}: {message}")

    def rollback(self, phase: DeploymentPhase, reason: str, message: str) -> None:
        st = self.st
        version = st.canary_version
        st.failed_version = version
        self.end_canary()
        st.phase = phase
        st.reason = reason
        why = f"{version} {phase}: {message}; stable stays on {st.stable_version}"
        st.message = why + RETRY_HINT
        self.event("Warning", reason, why)

    # -- result --------------------------------------------------------------------------
    def settle_commands(self) -> list[str]:
        """Record the handled one-shot commands in the status; return the annotations to
        remove: acted on now, or before a crash cut the pass short of removing them. A
        handled entry whose annotation is gone is dropped, so the same value (`kubectl
        annotate … promote=true`) may ask again later."""
        present = self.obs.commands.present
        handled = self.handled
        for key in [k for k in handled if k not in present and k not in self.consumed]:
            del handled[key]
        self.st.handled_commands = [
            HandledCommand(annotation=k, value=v) for k, v in sorted(handled.items())
        ]
        return [
            k
            for k in ONE_SHOT_ANNOTATIONS
            if k in self.consumed or (k in present and handled.get(k) == present[k])
        ]

    def decision(self) -> Decision:
        st = self.st
        kind, reason, message = self.condition
        gen = self.obs.generation
        if kind == "ready":
            st.conditions = mark_ready(st.conditions, reason, message, self.now, gen)
        elif kind == "reconciling":
            st.conditions = mark_reconciling(st.conditions, reason, message, self.now, gen)
        else:
            st.conditions = mark_stalled(st.conditions, reason, message, self.now, gen)
        actions: list[Action] = [
            ApplyTrack("stable", st.stable_version, st.stable_replicas if st.stable_version else 0),
            ApplyTrack("canary", st.canary_version, st.canary_replicas if st.canary_version else 0),
        ]
        if self.gateway:
            actions.append(SetRouteWeights(100 - st.canary_weight, st.canary_weight))
        actions.extend(RemoveAnnotation(key) for key in self.settle_commands())
        return Decision(
            actions=actions,
            status=st,
            requeue_after=self.requeue,
            events=self.events,
            analysis=self.plan,
        )
