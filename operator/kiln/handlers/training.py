"""TrainingJob -> training Pods -> ModelVersion: observe, ask `kiln.core`, apply.

Everything around one pass (the watch, the queue, the cache, status writes, the error
path) is the chassis (`kiln.handlers.chassis`). One pass:

    read the TrainingJob ─▶ plan_triggers (new run?) ─▶ list its pods ─▶ decide_run per
    active run ─▶ create/delete pods, register the ModelVersion ─▶ summarize ─▶ write status

Level-triggered and idempotent: every pass starts from what the apiserver says now, pods
have deterministic names (a second create of the same attempt is a 409, and the pod is
adopted), and a run's ModelVersion is found by its labels before one is created. Killing the
operator at any point therefore never duplicates a pod or a version. Delays (backoff,
deadlines, cron times, dataset polls) are requeues of the key, so a single process serves
thousands of jobs without a task per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from kiln import telemetry
from kiln.api.training_job import RunRecord, TrainingJob, TrainingJobStatus
from kiln.api.validation import validation_message
from kiln.api.wire import (
    INVALID_SPEC,
    RUN_LABEL,
    TRAINING_JOB_UID_LABEL,
    TRIAL_LABEL,
)
from kiln.builders.training_pod import (
    TRAINER_CONTAINER,
    PodBuildError,
    SearchPod,
    TrainerDefaults,
    training_pod,
)
from kiln.core import progress as trainer_progress
from kiln.core import search as hp
from kiln.core import trainingjob as tj
from kiln.core.schedule import ACTIVE_PHASES
from kiln.core.training import (
    SUCCEEDED,
    CreatePod,
    DeletePod,
    PodObservation,
    RegisterModel,
    RetryPolicy,
    decide_run,
)
from kiln.handlers.chassis import Controller, Key, Stalled, key_of, owner_keys, utcnow
from kiln.handlers.observations import observe_pod
from kiln.k8s.client import PODS, TRAINING_JOBS, ApiError, KubeClient, gather_limited
from kiln.services.datasets import DatasetProbe
from kiln.services.registration import register_run
from kiln.settings import OperatorSettings
from kiln.telemetry import search as search_metrics

logger = logging.getLogger(__name__)

KIND = "TrainingJob"
# Log tails read at once in one pass (a search has up to `parallelism` running pods).
LOG_READS_IN_FLIGHT = 4


class TrainingController(Controller):
    """Reconciles TrainingJobs; one instance per operator process."""

    kind = KIND
    memo_key = "training_controller"
    resource = TRAINING_JOBS
    status_type = TrainingJobStatus

    def __init__(
        self,
        client: KubeClient,
        settings: OperatorSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        datasets: DatasetProbe | None = None,
    ) -> None:
        super().__init__(client, settings, clock=clock, workers=settings.workers)
        self.datasets = datasets or DatasetProbe(client, settings.s3_endpoint)
        # Dataset polls are rate-limited per job in memory (losing this on restart only means
        # one extra poll).
        self._next_poll: dict[Key, float] = {}
        self._active: dict[Key, int] = {}
        # Echoes of this controller's pod actions: the pods it created (until the watch shows
        # them), and the last observation of every pod the watch delivered.
        self._created_pods: set[Key] = set()
        self._pod_seen: dict[str, PodObservation] = {}
        # When each running pod's log was last read (monotonic), to read it at most every
        # `trainer_log_interval_seconds`; lost on restart, which only means one read sooner.
        self._log_read: dict[Key, float] = {}

    @property
    def defaults(self) -> TrainerDefaults:
        return TrainerDefaults(
            image=self.settings.trainer_image,
            output_uri=self.settings.artifact_uri,
            s3_endpoint=self.settings.s3_endpoint,
        )

    def forget(self, key: Key) -> None:
        self._next_poll.pop(key, None)
        self._active.pop(key, None)

    def enqueue(self, key: Key, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        super().enqueue(key, body, deleted=deleted)
        telemetry.QUEUE_DEPTH.set(len(self.queue))

    def pod_changed(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """Whether a pod event needs a reconcile of its TrainingJob.

        A reconcile sees a pod only through `observe_pod`; an event that leaves that
        observation as it was (a scheduling condition, an IP, a label), or that is the watch
        showing a pod this controller has just created and which has not started, carries
        nothing a pass could act on.
        """
        metadata = body.get("metadata") or {}
        uid = metadata.get("uid") or metadata.get("name") or ""
        created = key_of(metadata.get("namespace"), metadata.get("name") or "")
        if event_type == "DELETED":
            self._pod_seen.pop(uid, None)
            self._created_pods.discard(created)
            self._log_read.pop(created, None)
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

    # --- one pass ----------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        """Bring one TrainingJob one step closer to its goal; seconds until the next look."""
        telemetry.QUEUE_DEPTH.set(len(self.queue))
        raw = await self.read(key)
        if raw is None or raw.get("metadata", {}).get("deletionTimestamp"):
            return None  # the garbage collector removes its pods
        now = self.clock()
        try:
            job = TrainingJob.model_validate(raw)
        except ValidationError as e:
            raise Stalled(INVALID_SPEC, validation_message(e), resync=None) from e

        observed_digest = await self._poll_dataset(key, job)
        if (stalled := tj.plan_triggers(job, now, observed_digest).stalled) is not None:
            raise Stalled(INVALID_SPEC, stalled, resync=None)

        runs: dict[int, RunRecord] = {r.run: r for r in job.status.runs}
        active = [r for r in runs.values() if r.phase in ACTIVE_PHASES]
        pods = await self._pods(job) if tj.needs_pods(job) else []
        logs, running = await self._trainer_logs(job, pods, {r.run for r in active})
        policy = RetryPolicy(job.spec.backoff_limit, job.spec.active_deadline_seconds)
        events: list[tuple[str, str]] = []
        delays: list[timedelta | None] = [
            trainer_progress.log_requeue(running, self.settings.trainer_log_interval_seconds)
        ]
        new_metrics: dict[str, float] | None = None

        async def advance(run: RunRecord) -> None:
            of_run = [
                p
                for p in pods
                if (p["metadata"].get("labels") or {}).get(RUN_LABEL) == str(run.run)
            ]
            if job.spec.search is not None and (run.search is not None or run.attempts == 0):
                await advance_search(run, of_run)
                return
            observations = [observe_pod(p) for p in of_run]
            decision = decide_run(
                job.metadata.name or "", run, observations, policy, now, logs=logs
            )
            happened = [decision.event] if decision.event is not None else []
            await carry_out(decision.run, decision.actions, decision.requeue_after, happened)

        async def carry_out(
            run: RunRecord,
            actions: Any,
            requeue_after: timedelta | None,
            happened: list[tuple[str, str]],
        ) -> None:
            """Apply a run's (or search's) decision and record what it did in this pass."""
            nonlocal new_metrics
            updated = run
            try:
                for action in actions:
                    updated, produced = await self._apply(job, updated, action, now)
                    if produced is not None:
                        new_metrics = produced
            except PodBuildError as e:
                raise Stalled(INVALID_SPEC, str(e), resync=None) from e
            runs[run.run] = updated
            delays.append(requeue_after)
            events.extend(tj.run_event(updated, *event) for event in happened)
            if updated.phase not in ACTIVE_PHASES:
                self._count_finished(updated)

        async def advance_search(run: RunRecord, of_run: list[dict[str, Any]]) -> None:
            """A run with spec.search: trial pods, then the best trained (`core.search`)."""
            search = job.spec.search
            assert search is not None
            trial_pods: dict[int, list[PodObservation]] = {}
            run_pods: list[PodObservation] = []
            for pod in of_run:
                trial = (pod["metadata"].get("labels") or {}).get(TRIAL_LABEL)
                if trial is not None and trial.isdigit():
                    trial_pods.setdefault(int(trial), []).append(observe_pod(pod))
                elif trial is None:
                    run_pods.append(observe_pod(pod))
            seed = search.effective_seed(job.spec.evaluation.seed)
            decision = hp.decide_search(
                job.metadata.name or "",
                run,
                search,
                seed,
                trial_pods,
                run_pods,
                policy,
                now,
                logs=logs,
            )
            await carry_out(decision.run, decision.actions, decision.requeue_after,
                            list(decision.events))  # fmt: skip

        # The runs in flight first: a trigger is judged against them as they are now, not
        # as the last status write left them (a run whose pod succeeded and whose version
        # was registered just before a crash is over, and must not make a retrain request
        # look Forbidden).
        for run in sorted(active, key=lambda r: r.run):
            await advance(run)
        plan = tj.plan_triggers(job, now, observed_digest, runs=list(runs.values()))
        events.extend(plan.events)
        if plan.start is not None:
            # Before anything is cancelled for it: a new run that cannot get a pod must not
            # cost the running one its pods (concurrencyPolicy Replace).
            try:
                training_pod(job, 1, 1, self.defaults)
            except PodBuildError as e:
                raise Stalled(INVALID_SPEC, str(e), resync=None) from e
        for number in plan.cancel:
            if number in runs and runs[number].phase in ACTIVE_PHASES:
                events.append(tj.run_replaced_event(runs[number]))
                runs[number] = tj.cancel_run(runs[number], now)
                await self._delete_run_pods(pods, number)
        if plan.start is not None:
            run = tj.new_run(job.status.model_copy(update={"runs": list(runs.values())}),
                             plan.start, now)  # fmt: skip
            runs[run.run] = run
            events.append(tj.run_started_event(run))
            await advance(run)

        kept, gone = tj.prune(list(runs.values()), job)
        for number in gone:
            await self._delete_run_pods(pods, number)
        status = tj.summarize(job, kept, now, plan=plan)
        if new_metrics is not None:
            status = status.model_copy(update={"metrics": new_metrics})

        self._active[key] = sum(1 for r in kept if r.phase in ACTIVE_PHASES)
        telemetry.ACTIVE_RUNS.set(sum(self._active.values()))
        # The one write that records this pass: runs started or cancelled, and the triggers
        # they consumed (retrain request, cron time, dataset digest) with them.
        if status != job.status and not await self.write_status(key, raw, status):
            return 0.0
        search_metrics.record(*key, status.runs)
        for reason, message in events:
            warning = tj.is_warning(reason) and not hp.is_normal_search_reason(reason)
            self.post_event(raw, reason, message, warning=warning)
        telemetry.QUEUE_DEPTH.set(len(self.queue))
        return tj.next_look([*delays, self._poll_delay(key, job)], plan.next_check, now)

    # --- actions -----------------------------------------------------------------------

    async def _apply(
        self, job: TrainingJob, run: RunRecord, action: Any, now: datetime
    ) -> tuple[RunRecord, dict[str, float] | None]:
        namespace = job.metadata.namespace or "default"
        if isinstance(action, (CreatePod, hp.CreateTrialPod)):
            manifest = training_pod(
                job,
                run.run,
                action.attempt,
                self.defaults,
                action.active_deadline_seconds,
                search=self._search_pod(job, run, action),
            )
            # Before the POST: the watch may show the pod before the POST's answer arrives.
            self._created_pods.add((namespace, action.name))
            try:
                await self.client.create(PODS, namespace, manifest)
                telemetry.ATTEMPTS.inc()
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
            lineage = self._search_lineage(job, run, action.result.search_report_uri)
            registered = await register_run(
                self.client, job, run.run, action.result, image, now, search=lineage
            )
            if registered.created:
                telemetry.REGISTERED.labels(registered.approval.state).inc()
            return run.model_copy(update={"model_version": registered.name}), dict(
                action.result.metrics
            )
        raise TypeError(f"unknown action {action!r}")

    @staticmethod
    def _search_pod(
        job: TrainingJob, run: RunRecord, action: CreatePod | hp.CreateTrialPod
    ) -> SearchPod | None:
        """A trial's values, or the best trial's with its search for the final training."""
        if isinstance(action, hp.CreateTrialPod):
            return SearchPod(params=action.params, trial=action.trial)
        best = hp.best_params(run)
        search = job.spec.search
        if best is None or search is None or run.search is None:
            return None
        state = run.search
        return SearchPod(
            params=best,
            summary={
                "strategy": search.strategy,
                "seed": search.effective_seed(job.spec.evaluation.seed),
                "trials": state.total,
                "bestTrial": state.best[0].trial,
                "metric": search.objective.metric,
                "maximize": search.objective.maximize(),
                "bestObjective": state.best[0].objective,
            },
        )

    @staticmethod
    def _search_lineage(
        job: TrainingJob, run: RunRecord, report_uri: str | None
    ) -> dict[str, Any] | None:
        search = job.spec.search
        if search is None or run.search is None:
            return None
        seed = search.effective_seed(job.spec.evaluation.seed)
        return hp.search_lineage(search, seed, run.search, report_uri)

    async def _pods(self, job: TrainingJob) -> list[dict[str, Any]]:
        return await self.client.list(
            PODS,
            job.metadata.namespace,
            labels={TRAINING_JOB_UID_LABEL: job.metadata.uid or ""},
        )

    async def _trainer_logs(
        self, job: TrainingJob, pods: list[dict[str, Any]], runs: set[int]
    ) -> tuple[dict[str, str], int]:
        """The log tails of the active runs' running pods whose read is due, by pod name,
        and how many of their pods run. Best effort: a read that fails (no `pods/log` in the
        operator's RBAC, the pod gone, the kubelet unreachable) leaves that pod out, and
        the trainer's phase stays as the status has it."""
        interval = self.settings.trainer_log_interval_seconds
        namespace = job.metadata.namespace or "default"
        wanted = {str(number) for number in runs}
        clock = time.monotonic()
        due: list[str] = []
        running = 0
        for pod in pods:
            metadata = pod["metadata"]
            if (metadata.get("labels") or {}).get(RUN_LABEL) not in wanted:
                continue
            name = metadata["name"]
            observation = observe_pod(pod)
            if observation.phase != "Running" or observation.deleted:
                self._log_read.pop((namespace, name), None)
                continue
            running += 1
            last = self._log_read.get((namespace, name))
            if trainer_progress.log_due(True, last, clock, interval):
                due.append(name)
        for name in due:
            self._log_read[(namespace, name)] = clock
        tails = await gather_limited(
            LOG_READS_IN_FLIGHT, *(self._log_tail(namespace, name) for name in due)
        )
        logs = {name: tail for name, tail in zip(due, tails, strict=True) if tail is not None}
        return logs, running

    async def _log_tail(self, namespace: str, pod: str) -> str | None:
        try:
            return await self.client.logs(
                namespace,
                pod,
                container=TRAINER_CONTAINER,
                tail_lines=trainer_progress.LOG_TAIL_LINES,
            )
        except Exception as e:  # never fails the pass: the phase is a nicety
            logger.debug("cannot read the log of pod %s/%s: %s", namespace, pod, e)
            return None

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
        telemetry.RUNS.labels(result, run.reason or SUCCEEDED).inc()
        if run.start_time is not None and run.completion_time is not None:
            seconds = (run.completion_time - run.start_time).total_seconds()
            telemetry.RUN_DURATION.labels(result).observe(max(seconds, 0.0))

    # --- dataset-change trigger -------------------------------------------------------

    def _poll_delay(self, key: Key, job: TrainingJob) -> timedelta | None:
        due = self._next_poll.get(key)
        return tj.poll_delay(job, None if due is None else due - time.monotonic())

    async def _poll_dataset(self, key: Key, job: TrainingJob) -> str | None:
        triggers = job.spec.triggers
        if triggers is None or triggers.dataset_change is None:
            self._next_poll.pop(key, None)
            return None
        due = self._next_poll.get(key, 0.0)
        if time.monotonic() < due:
            return None
        self._next_poll[key] = time.monotonic() + triggers.dataset_change.poll_interval_seconds
        return await self.datasets.digest(job)


# --- kopf wiring: watch events only enqueue keys ------------------------------------------


@kopf.on.startup()
async def start_training_controller(memo: kopf.Memo, **_: Any) -> None:
    TrainingController.start_in(
        memo,
        lambda: TrainingController(KubeClient.from_config(), OperatorSettings.from_env()),
    )


@kopf.on.cleanup()
async def stop_training_controller(memo: kopf.Memo, **_: Any) -> None:
    await TrainingController.stop_in(memo)


@kopf.on.event(TRAINING_JOBS.group, TRAINING_JOBS.version, TRAINING_JOBS.plural)
async def training_job_event(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    controller = TrainingController.in_memo(memo)
    if controller is not None:
        controller.enqueue(key_of(namespace, name), body, deleted=type == "DELETED")


@kopf.on.event(PODS.group, PODS.version, PODS.plural, labels={TRAINING_JOB_UID_LABEL: kopf.PRESENT})
async def training_pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller = TrainingController.in_memo(memo)
    if controller is not None and controller.pod_changed(type, body):
        for key in owner_keys(body, KIND):
            controller.queue.add(key)
