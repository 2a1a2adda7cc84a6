"""TrainingJob -> training Pods -> ModelVersion: the thin adapter around `kiln.core`.

kopf watches TrainingJobs and the pods they own; every event only enqueues the job's key
(`kiln.k8s.workqueue`). A worker then reconciles that job, one worker per job at a time:

    GET the TrainingJob ─▶ plan_triggers (new run?) ─▶ LIST its pods ─▶ decide_run per
    active run ─▶ create/delete pods, register the ModelVersion ─▶ summarize ─▶ write status

Level-triggered and idempotent: every pass starts from what the apiserver says now, pods
have deterministic names (a second create of the same attempt is a 409, and the pod is
adopted), and a run's ModelVersion is found by its labels before one is created. Killing the
operator at any point therefore never duplicates a pod or a version. Delays (backoff,
deadlines, cron times, dataset polls) are requeues of the key, so a single process serves
thousands of jobs without a task per job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from kiln import metrics
from kiln.api.training_job import RunRecord, TrainingJob, TrainingJobStatus
from kiln.builders.training_pod import (
    ATTEMPT_LABEL,
    TRAINER_CONTAINER,
    PodBuildError,
    TrainerDefaults,
    training_pod,
)
from kiln.core import conditions as cond
from kiln.core import trainingjob as tj
from kiln.core.registry import RUN_LABEL, TRAINING_JOB_UID_LABEL
from kiln.core.schedule import ACTIVE_PHASES
from kiln.core.training import (
    SUCCEEDED,
    ContainerTermination,
    CreatePod,
    DeletePod,
    PodObservation,
    RegisterModel,
    RetryPolicy,
    decide_run,
)
from kiln.handlers.datasets import DatasetProbe
from kiln.handlers.registry import register_run
from kiln.k8s.client import PODS, TRAINING_JOBS, ApiError, KubeClient
from kiln.k8s.events import EventPoster
from kiln.k8s.validation import validation_message
from kiln.k8s.workqueue import WorkQueue, run_workers, stop_workers
from kiln.settings import OperatorSettings

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)

# Reasons whose Events are Warnings.
NORMAL_REASONS = {SUCCEEDED, "AttemptStarted", "Pending", "Running", tj.RUN_STARTED}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def observe_pod(pod: dict[str, Any]) -> PodObservation:
    """A pod as the training state machine sees it."""
    metadata = pod.get("metadata", {})
    status = pod.get("status") or {}
    terminated = None
    for container in status.get("containerStatuses") or []:
        if container.get("name") != TRAINER_CONTAINER:
            continue
        state = (container.get("state") or {}).get("terminated")
        if state:
            terminated = ContainerTermination(
                exit_code=int(state.get("exitCode", 1)),
                reason=state.get("reason"),
                message=state.get("message"),
            )
    labels = metadata.get("labels") or {}
    return PodObservation(
        name=metadata.get("name", ""),
        attempt=int(labels.get(ATTEMPT_LABEL, "0") or 0),
        phase=status.get("phase") or "Pending",
        terminated=terminated,
        reason=status.get("reason"),
        message=status.get("message"),
        deleted=metadata.get("deletionTimestamp") is not None,
    )


def status_patch(status: TrainingJobStatus, resource_version: str | None = None) -> dict[str, Any]:
    """The whole status as a merge patch: fields that became empty are removed (null).

    With `resource_version`, the apiserver applies it only to that version of the object
    (409 otherwise): a status computed from a stale copy never overwrites a newer one.
    """
    wire = status.to_wire()
    for name, info in TrainingJobStatus.model_fields.items():
        alias = info.alias or name
        wire.setdefault(alias, None)
    patch: dict[str, Any] = {"status": wire}
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


def resource_version(obj: dict[str, Any]) -> int | None:
    """The object's resourceVersion as a number (etcd's revision), None when opaque."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class TrainingController:
    """Reconciles TrainingJobs; one instance per operator process."""

    client: KubeClient
    settings: OperatorSettings
    clock: Callable[[], datetime] = utcnow
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    datasets: DatasetProbe | None = None
    # Dataset polls are rate-limited per job in memory (losing this on restart only means
    # one extra poll).
    _next_poll: dict[Key, float] = field(default_factory=dict)
    _active: dict[Key, int] = field(default_factory=dict)
    # The newest body of each TrainingJob that the watch delivered (an informer cache), and
    # the newest resourceVersion this controller has read or written. A cached body older
    # than that is stale (it predates our own last write): the reconcile GETs instead.
    _bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _known: dict[Key, int] = field(default_factory=dict)
    # Echoes of this controller's own actions, which need no reconcile: the
    # resourceVersions its status/annotation writes produced, the pods it created (until
    # the watch shows them), and the last observation of every pod the watch delivered.
    _own_writes: dict[Key, set[int]] = field(default_factory=dict)
    _created_pods: set[tuple[str, str]] = field(default_factory=set)
    _pod_seen: dict[str, PodObservation] = field(default_factory=dict)
    events: EventPoster | None = None

    def __post_init__(self) -> None:
        if self.datasets is None:
            self.datasets = DatasetProbe(self.client, self.settings.s3_endpoint)
        if self.events is None:
            # Events wait while reconciles are queued: pods and statuses come first.
            self.events = EventPoster(self.client, busy=lambda: len(self.queue) > 0)

    # --- the watch's copy of each TrainingJob ---------------------------------------------

    def observe(self, key: Key, body: dict[str, Any]) -> None:
        """Remember the body the watch delivered; the reconcile uses it instead of a GET."""
        current = self._bodies.get(key)
        version = resource_version(body)
        if version is None:
            self._bodies.pop(key, None)
            return
        if current is not None and (resource_version(current) or 0) > version:
            return  # the watch never goes back in time; keep the newer copy
        self._bodies[key] = body

    def job_changed(self, key: Key, body: dict[str, Any]) -> bool:
        """Whether a TrainingJob event needs a reconcile: not when it is the echo of this
        controller's own write (that pass already acted on everything it wrote)."""
        self.observe(key, body)
        own = self._own_writes.get(key)
        version = resource_version(body)
        if own and version in own:
            own.discard(version)
            return False
        return True

    def pod_changed(self, event_type: str | None, body: dict[str, Any]) -> bool:
        """Whether a pod event needs a reconcile of its TrainingJob.

        A reconcile sees a pod only through `observe_pod`; an event that leaves that
        observation as it was (a scheduling condition, an IP, a label), or that is the watch
        showing a pod this controller has just created and which has not started, carries
        nothing a pass could act on.
        """
        metadata = body.get("metadata") or {}
        uid = metadata.get("uid") or metadata.get("name") or ""
        created = (metadata.get("namespace") or "default", metadata.get("name") or "")
        if event_type == "DELETED":
            self._pod_seen.pop(uid, None)
            self._created_pods.discard(created)
            return True
        observation = observe_pod(body)
        previous = self._pod_seen.get(uid)
        self._pod_seen[uid] = observation
        if previous is not None:
            return previous != observation
        if created in self._created_pods:
            self._created_pods.discard(created)
            untouched = PodObservation(observation.name, observation.attempt, "Pending")
            return observation != untouched
        return True

    def _wrote(self, key: Key, obj: dict[str, Any]) -> None:
        self._learn(key, obj)
        version = resource_version(obj)
        if version is not None:
            own = self._own_writes.setdefault(key, set())
            if len(own) > 8:  # echoes that never came (a watch restart): drop the oldest
                own.discard(min(own))
            own.add(version)

    def forget(self, key: Key) -> None:
        self._bodies.pop(key, None)
        self._known.pop(key, None)
        self._own_writes.pop(key, None)
        self._next_poll.pop(key, None)
        self._active.pop(key, None)

    def _learn(self, key: Key, obj: dict[str, Any]) -> None:
        version = resource_version(obj)
        if version is not None and version > self._known.get(key, 0):
            self._known[key] = version

    async def _read(self, key: Key) -> dict[str, Any]:
        """The TrainingJob: the watch's copy when it is at least as new as anything this
        controller has read or written, else a GET."""
        cached = self._bodies.get(key)
        if cached is not None:
            version = resource_version(cached)
            if version is not None and version >= self._known.get(key, 0):
                return cached
        namespace, name = key
        raw = await self.client.get(TRAINING_JOBS, namespace, name)
        self._learn(key, raw)
        return raw

    def _post_event(self, raw: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        if self.events is not None:
            self.events.post(raw, reason, message, warning=warning)

    @property
    def defaults(self) -> TrainerDefaults:
        return TrainerDefaults(
            image=self.settings.trainer_image,
            output_uri=self.settings.artifact_uri,
            s3_endpoint=self.settings.s3_endpoint,
        )

    async def run(self) -> None:
        await run_workers(self.queue, self._timed_reconcile, self.settings.workers)

    async def _timed_reconcile(self, key: Key) -> float | None:
        metrics.QUEUE_DEPTH.set(len(self.queue))
        started = time.perf_counter()
        try:
            return await self.reconcile(key)
        except Exception:
            metrics.RECONCILE_ERRORS.labels("TrainingJob").inc()
            raise
        finally:
            metrics.RECONCILE_DURATION.labels("TrainingJob").observe(time.perf_counter() - started)

    # --- one pass ----------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        """Bring one TrainingJob one step closer to its goal; seconds until the next look."""
        namespace, name = key
        try:
            raw = await self._read(key)
        except ApiError as e:
            if e.not_found:
                self.queue.forget(key)
                self.forget(key)
                return None
            raise
        if raw.get("metadata", {}).get("deletionTimestamp"):
            return None  # the garbage collector removes its pods
        now = self.clock()
        try:
            job = TrainingJob.model_validate(raw)
        except ValidationError as e:
            await self._stall(raw, tj.INVALID_SPEC, validation_message(e), now)
            return None

        observed_digest = await self._poll_dataset(key, job)
        plan = tj.plan_triggers(job, now, observed_digest)
        if plan.stalled is not None:
            await self._stall(raw, tj.INVALID_SPEC, plan.stalled, now)
            return None
        events: list[tuple[str, str]] = list(plan.events)

        runs: dict[int, RunRecord] = {r.run: r for r in job.status.runs}
        cancelled = [runs[n] for n in plan.cancel if n in runs]
        for run in cancelled:
            runs[run.run] = tj.cancel_run(run, now)
            events.append((tj.REPLACED, f"run {run.run} cancelled: a new run replaces it"))
        if plan.start is not None:
            run = tj.new_run(job.status, plan.start, now)
            runs[run.run] = run
            events.append((tj.RUN_STARTED, f"run {run.run} started (trigger: {plan.start})"))

        active = [r for r in runs.values() if r.phase in ACTIVE_PHASES]
        listed = bool(cancelled) or any(r.attempts > 0 for r in active) or len(runs) > 1
        pods = await self._pods(job) if listed else []
        for run in cancelled:
            await self._delete_run_pods(pods, run.run)

        policy = RetryPolicy(job.spec.backoff_limit, job.spec.active_deadline_seconds)
        delays: list[timedelta | None] = []
        new_metrics: dict[str, float] | None = None
        for run in sorted(active, key=lambda r: r.run):
            observations = [
                observe_pod(p)
                for p in pods
                if (p["metadata"].get("labels") or {}).get(RUN_LABEL) == str(run.run)
            ]
            decision = decide_run(name, run, observations, policy, now)
            updated = decision.run
            try:
                for action in decision.actions:
                    updated, produced = await self._apply(job, updated, action, now)
                    if produced is not None:
                        new_metrics = produced
            except PodBuildError as e:
                await self._stall(raw, tj.INVALID_SPEC, str(e), now)
                return None
            runs[run.run] = updated
            delays.append(decision.requeue_after)
            if decision.event is not None:
                reason, message = decision.event
                if reason == SUCCEEDED and updated.model_version:
                    message = f"{message}; registered {updated.model_version}"
                events.append((reason, f"run {run.run}: {message}"))
            if updated.phase not in ACTIVE_PHASES:
                self._count_finished(updated)

        kept, gone = tj.prune(list(runs.values()), job)
        for number in gone:
            await self._delete_run_pods(pods, number)
        status = tj.summarize(job, kept, now, plan=plan)
        if new_metrics is not None:
            status = status.model_copy(update={"metrics": new_metrics})

        self._active[key] = sum(1 for r in kept if r.phase in ACTIVE_PHASES)
        metrics.ACTIVE_RUNS.set(sum(self._active.values()))
        if status != job.status:
            rv = (raw.get("metadata") or {}).get("resourceVersion")
            try:
                written = await self.client.patch(
                    TRAINING_JOBS, namespace, name, status_patch(status, rv), subresource="status"
                )
            except ApiError as e:
                if not e.conflict:
                    raise
                # The copy was stale. What this pass did is idempotent (deterministic pod
                # names, ModelVersions found by label): go again from a fresh read.
                logger.info("%s/%s changed during the reconcile: again", namespace, name)
                self._bodies.pop(key, None)
                return 0.0
            self._wrote(key, written)
        if plan.retrain_handled is not None:
            handled = {tj.RETRAIN_HANDLED_ANNOTATION: plan.retrain_handled}
            written = await self.client.patch(
                TRAINING_JOBS, namespace, name, {"metadata": {"annotations": handled}}
            )
            self._wrote(key, written)
        for reason, message in events:
            self._post_event(raw, reason, message, warning=reason not in NORMAL_REASONS)
        poll = self._poll_delay(key, job)
        delay = tj.requeue_delay([*delays, poll], plan.next_check, now)
        metrics.QUEUE_DEPTH.set(len(self.queue))
        return None if delay is None else delay + 0.05

    # --- actions -----------------------------------------------------------------------

    async def _apply(
        self, job: TrainingJob, run: RunRecord, action: Any, now: datetime
    ) -> tuple[RunRecord, dict[str, float] | None]:
        namespace = job.metadata.namespace or "default"
        if isinstance(action, CreatePod):
            manifest = training_pod(
                job, run.run, action.attempt, self.defaults, action.active_deadline_seconds
            )
            # Before the POST: the watch may show the pod before the POST's answer arrives.
            self._created_pods.add((namespace, action.name))
            try:
                await self.client.create(PODS, namespace, manifest)
                metrics.ATTEMPTS.inc()
            except BaseException as e:
                if not (isinstance(e, ApiError) and e.conflict):
                    self._created_pods.discard((namespace, action.name))
                    raise
                logger.info("pod %s/%s exists already: adopted", namespace, action.name)
            return run, None
        if isinstance(action, DeletePod):
            await self.client.delete(PODS, namespace, action.name)
            return run, None
        if isinstance(action, RegisterModel):
            image = job.spec.image or self.defaults.image
            registered = await register_run(self.client, job, run.run, action.result, image, now)
            if registered.created:
                metrics.REGISTERED.labels(registered.approval.state).inc()
            return run.model_copy(update={"model_version": registered.name}), dict(
                action.result.metrics
            )
        raise TypeError(f"unknown action {action!r}")

    async def _pods(self, job: TrainingJob) -> list[dict[str, Any]]:
        return await self.client.list(
            PODS,
            job.metadata.namespace,
            labels={TRAINING_JOB_UID_LABEL: job.metadata.uid or ""},
        )

    async def _delete_run_pods(self, pods: list[dict[str, Any]], run: int) -> None:
        for pod in pods:
            metadata = pod["metadata"]
            if (metadata.get("labels") or {}).get(RUN_LABEL) != str(run):
                continue
            await self.client.delete(
                PODS, metadata.get("namespace"), metadata["name"], uid=metadata.get("uid")
            )

    def _count_finished(self, run: RunRecord) -> None:
        result = "Succeeded" if run.phase == "Succeeded" else "Failed"
        metrics.RUNS.labels(result, run.reason or SUCCEEDED).inc()
        if run.start_time is not None and run.completion_time is not None:
            seconds = (run.completion_time - run.start_time).total_seconds()
            metrics.RUN_DURATION.labels(result).observe(max(seconds, 0.0))

    async def _stall(self, raw: dict[str, Any], reason: str, message: str, now: datetime) -> None:
        """Stalled=True with the reason: the spec needs a person, not a retry."""
        metadata = raw.get("metadata", {})
        try:
            previous = TrainingJobStatus.model_validate(raw.get("status") or {})
        except ValidationError:
            previous = TrainingJobStatus()
        generation = metadata.get("generation")
        conditions = cond.mark_stalled(previous.conditions, reason, message, now, generation)
        status = previous.model_copy(
            update={"conditions": conditions, "observed_generation": generation}
        )
        if status == previous:
            return
        written = await self.client.patch(
            TRAINING_JOBS,
            metadata.get("namespace"),
            metadata.get("name", ""),
            status_patch(status),
            subresource="status",
        )
        self._learn((metadata.get("namespace") or "default", metadata.get("name", "")), written)
        self._post_event(raw, reason, message, warning=True)

    # --- dataset-change trigger -------------------------------------------------------

    def _poll_delay(self, key: Key, job: TrainingJob) -> timedelta | None:
        due = self._next_poll.get(key)
        if due is None or job.spec.triggers is None or job.spec.triggers.dataset_change is None:
            return None
        return timedelta(seconds=max(due - time.monotonic(), 0.0))

    async def _poll_dataset(self, key: Key, job: TrainingJob) -> str | None:
        triggers = job.spec.triggers
        if triggers is None or triggers.dataset_change is None or self.datasets is None:
            self._next_poll.pop(key, None)
            return None
        due = self._next_poll.get(key, 0.0)
        if time.monotonic() < due:
            return None
        self._next_poll[key] = time.monotonic() + triggers.dataset_change.poll_interval_seconds
        return await self.datasets.digest(job)


# --- kopf glue --------------------------------------------------------------------------

_controller: TrainingController | None = None
_tasks: list[asyncio.Task[None]] = []


def controller() -> TrainingController | None:
    return _controller


@kopf.on.startup()
async def start_training_controller(**_: Any) -> None:
    global _controller
    settings = OperatorSettings.from_env()
    _controller = TrainingController(KubeClient.from_config(), settings)
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port)
        except OSError as e:  # metrics are not worth refusing to reconcile over
            logger.error("cannot serve /metrics on port %s: %s", settings.metrics_port, e)
    _tasks.append(asyncio.get_running_loop().create_task(_controller.run()))


@kopf.on.cleanup()
async def stop_training_controller(**_: Any) -> None:
    global _controller
    if _controller is None:
        return
    await stop_workers(_controller.queue, _tasks)
    if _controller.events is not None:
        await _controller.events.close()
    await _controller.client.close()
    _controller = None


@kopf.on.event("kiln.dev", "v1alpha1", "trainingjobs")
async def training_job_event(
    type: str, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> None:
    if _controller is None:
        return
    key = (namespace or "default", name)
    if type == "DELETED":
        _controller.queue.forget(key)
        _controller.forget(key)
        return
    # kopf's Body is a read-only view of the watch's object; the reconcile only reads it.
    if _controller.job_changed(key, dict(body)):
        _controller.queue.add(key)
    metrics.QUEUE_DEPTH.set(len(_controller.queue))


@kopf.on.event("", "v1", "pods", labels={TRAINING_JOB_UID_LABEL: kopf.PRESENT})
async def training_pod_event(
    type: str | None, body: kopf.Body, namespace: str | None, **_: Any
) -> None:
    if _controller is None or not _controller.pod_changed(type, dict(body)):
        return
    for owner in body.metadata.get("ownerReferences") or []:
        if owner.get("kind") == "TrainingJob" and owner.get("apiVersion", "").startswith(
            "kiln.dev/"
        ):
            _controller.queue.add((namespace or "default", owner["name"]))
