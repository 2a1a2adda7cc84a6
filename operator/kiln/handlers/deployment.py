"""ModelDeployment -> serving Deployments, Service and route: observe, ask `kiln.core`, apply.

Everything around one pass (the watch, the queue, the cache, status writes, the error
path) is the chassis (`kiln.handlers.chassis`). Watch events of ModelDeployments, of the
Deployments and pods they own, and of ModelVersions (a newly Approved version pokes every
ModelDeployment following its model) only enqueue a key. One pass observes the world, asks
the pure state machine (`kiln.core.canary.step`) what to do, runs the Prometheus queries
it asks for, and applies the decision: Deployments and Service created or patched (owner
references, idempotent), status written (with the one-shot commands it acted on), then
those command annotations removed, Events posted, metrics updated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kiln.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from kiln.api.model_version import ModelVersion
from kiln.api.validation import validation_message
from kiln.api.wire import INVALID_SPEC, MODEL_DEPLOYMENT_LABEL, NAME_CONFLICT
from kiln.builders import serving
from kiln.core import canary
from kiln.core import monitoring as mon
from kiln.core.desired import contains
from kiln.core.failures import Failure
from kiln.handlers.chassis import Controller, Key, Stalled, key_of, owner_keys, utcnow
from kiln.handlers.observations import observe_track
from kiln.k8s.client import (
    DEPLOYMENTS,
    HTTP_ROUTES,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    POD_DISRUPTION_BUDGETS,
    PODS,
    SERVICES,
    ApiError,
    KubeClient,
    Resource,
)
from kiln.services.monitoring import MonitoringReader
from kiln.services.prometheus import PrometheusClient
from kiln.services.registration import parse_versions
from kiln.settings import OperatorSettings
from kiln.telemetry import monitoring as monitoring_metrics
from kiln.telemetry import rollouts

logger = logging.getLogger(__name__)

KIND = "ModelDeployment"


class DeploymentController(Controller):
    """Reconciles ModelDeployments; one instance per operator process."""

    kind = KIND
    memo_key = "deployment_controller"
    resource = MODEL_DEPLOYMENTS
    status_type = ModelDeploymentStatus

    def __init__(
        self,
        client: KubeClient,
        settings: OperatorSettings,
        prometheus: PrometheusClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        monitor: MonitoringReader | None = None,
    ) -> None:
        super().__init__(client, settings, clock=clock, workers=max(1, settings.workers // 4))
        self.prometheus = prometheus
        self.monitor = monitor or MonitoringReader(client, prometheus, settings.s3_endpoint)
        # ModelDeployment -> the model it serves (to find who follows a ModelVersion).
        self.models: dict[Key, str] = {}

    @property
    def defaults(self) -> serving.ServingDefaults:
        return serving.ServingDefaults(
            image=self.settings.server_image, s3_endpoint=self.settings.s3_endpoint
        )

    async def stop(self) -> None:
        await super().stop()
        await self.prometheus.close()

    def forget(self, key: Key) -> None:
        self.models.pop(key, None)
        rollouts.forget(*key)
        monitoring_metrics.forget(*key)

    def with_failure(self, status: Any, failure: Failure, generation: int | None) -> Any:
        updated = super().with_failure(status, failure, generation)
        if not failure.permanent:
            return updated
        return updated.model_copy(update={"reason": failure.reason, "message": failure.message})

    # -- watch plumbing ------------------------------------------------------------------
    def enqueue(self, key: Key, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        model = (body.get("spec") or {}).get("model")
        if model and not deleted:
            self.models[key] = str(model)
        super().enqueue(key, body, deleted=deleted)

    def model_version_changed(self, namespace: str, model: str) -> None:
        for (ns, name), followed in list(self.models.items()):
            if ns == namespace and followed == model:
                self.queue.add((ns, name))

    def serving_pod_changed(self, namespace: str, label: str | None) -> None:
        """A serving pod changed: its ModelDeployment (found by the pod's label) looks."""
        for ns, name in list(self.models):
            if ns == namespace and serving.selector_labels(name)[MODEL_DEPLOYMENT_LABEL] == label:
                self.queue.add((ns, name))

    # -- one pass ------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        namespace, name = key
        raw = await self.read(key)
        if raw is None:
            return None
        now = self.clock()
        try:
            md = ModelDeployment.model_validate(raw)
        except ValidationError as e:
            raise Stalled(INVALID_SPEC, validation_message(e), resync=None) from e
        self.models[key] = md.spec.model

        versions = parse_versions(await self.client.list(MODEL_VERSIONS, namespace))
        target = canary.resolve_target(md, versions)
        tracks = {track: await self._observe(md, track) for track in serving.TRACKS}
        observations = canary.Observations(
            namespace=namespace,
            name=name,
            generation=md.metadata.generation,
            target=target,
            stable=tracks["stable"],
            canary=tracks["canary"],
            commands=canary.commands_from_annotations(
                md.metadata.annotations, canary.handled_commands(md.status)
            ),
        )
        decision = canary.step(md.spec, md.status, observations, now)
        if decision.analysis is not None:
            results = await self.prometheus.query_many(decision.analysis.queries)
            vector_queries = decision.analysis.vector_queries  # the drift check's, if on
            vectors = await self.prometheus.query_vectors(vector_queries) if vector_queries else {}
            shares, why = (None, "")
            if canary.compares_canary_inputs(md.spec):
                canary_version = versions_by_name(versions).get(
                    decision.status.canary_version or ""
                )
                shares, why = await self.monitor.input_shares(md, canary_version)
            now = self.clock()
            observations = replace(
                observations,
                analysis=dict(results),
                vectors=vectors,
                canary_baseline=shares,
                canary_baseline_message=why,
            )
            decision = canary.step(md.spec, md.status, observations, now)
        by_name = versions_by_name(versions)
        try:
            await self._apply(md, decision.actions, by_name)
        except serving.ServingBuildError as e:
            raise Stalled(INVALID_SPEC, str(e), resync=None) from e
        monitored = await self._monitor(md, decision.status, tracks["stable"], by_name, now)
        status = monitored.status
        # The one write that consumes a one-shot command: its effect and its value, together
        # (and the monitoring evaluation, in the same write).
        if status != md.status and not await self.write_status(key, raw, status):
            return 0.0
        # Only then the annotations go: a crash before this leaves them recorded as handled.
        removed = [a.key for a in decision.actions if isinstance(a, canary.RemoveAnnotation)]
        if removed:
            await self.patch_metadata(key, {"annotations": dict.fromkeys(removed)})
        for event in [*decision.events, *monitored.events]:
            self.post_event(raw, event.reason, event.message, warning=event.type == "Warning")
        rollouts.record_status(namespace, name, decision.status)
        fresh = [r for r in decision.status.analysis if r not in md.status.analysis]
        rollouts.record_analysis(namespace, name, fresh)
        monitored.record_metrics(namespace, name)
        wakes = [d for d in (decision.requeue_after, monitored.requeue_after) if d is not None]
        return min(wakes) if wakes else None

    async def _monitor(
        self,
        md: ModelDeployment,
        status: ModelDeploymentStatus,
        stable: canary.TrackObservation,
        versions: dict[str, ModelVersion],
        now: datetime,
    ) -> _Monitored:
        """Continuous monitoring of the stable track (`kiln.core.monitoring`): evaluated at
        most every `intervalSeconds`, written in this pass's one status write; its Events
        come from the stored status and the new one, so a repeated pass posts none."""
        spec = md.spec.monitoring
        if spec is None:
            if status.monitoring is None and mon.cleared(status.conditions) == status.conditions:
                return _Monitored(status)
            cleared = status.model_copy(
                update={"monitoring": None, "conditions": mon.cleared(status.conditions)}
            )
            return _Monitored(cleared, forget=True)
        version = mon.monitored_version(status.stable_version, stable, versions)
        if version is None:
            return _Monitored(status)
        due = mon.due_in(spec, status.monitoring, version.metadata.name or "", now)
        if due > 0:
            return _Monitored(status, requeue_after=due)
        try:
            observation = await self.monitor.observe(md, version, spec, now)
        except Exception as e:  # monitoring never holds up serving: shown, retried next time
            logger.exception("monitoring of %s/%s failed", md.metadata.namespace, md.metadata.name)
            observation = mon.failed_observation(version, f"{type(e).__name__}: {e}")
        evaluation = mon.evaluate(spec, observation, status.conditions, now, md.metadata.generation)
        new = status.model_copy(
            update={"monitoring": evaluation.monitoring, "conditions": evaluation.conditions}
        )
        events = mon.transition_events(
            md.status.conditions, new.conditions, md.status.monitoring, new.monitoring
        )
        return _Monitored(
            new,
            events=events,
            requeue_after=float(spec.interval_seconds),
            evaluation=evaluation,
            version=version,
        )

    async def _observe(self, md: ModelDeployment, track: canary.Track) -> canary.TrackObservation:
        name = md.metadata.name or ""
        namespace = md.metadata.namespace or "default"
        try:
            deployment = await self.client.get(
                DEPLOYMENTS, namespace, serving.deployment_name(name, track)
            )
        except ApiError as e:
            if e.not_found:
                return canary.TrackObservation()
            raise
        pods = await self.client.list(PODS, namespace, labels=serving.selector_labels(name, track))
        return observe_track(deployment, pods)

    async def _apply(
        self,
        md: ModelDeployment,
        actions: list[canary.Action],
        versions: dict[str, ModelVersion],
    ) -> None:
        gateway = md.spec.gateway is not None
        await self._ensure(SERVICES, serving.service(md))
        for track in serving.TRACKS:
            await self._ensure(POD_DISRUPTION_BUDGETS, serving.disruption_budget(md, track))
        if gateway:
            for track in serving.TRACKS:
                await self._ensure(SERVICES, serving.service(md, track))
        for action in actions:
            if isinstance(action, canary.ApplyTrack):
                await self._apply_track(md, action, versions)
            elif isinstance(action, canary.SetRouteWeights):
                await self._ensure(
                    HTTP_ROUTES, serving.http_route(md, action.stable, action.canary)
                )

    async def _apply_track(
        self,
        md: ModelDeployment,
        action: canary.ApplyTrack,
        versions: dict[str, ModelVersion],
    ) -> None:
        namespace = md.metadata.namespace or "default"
        deployment_name = serving.deployment_name(md.metadata.name or "", action.track)
        version = versions.get(action.version) if action.version else None
        if version is not None:
            manifest = serving.server_deployment(
                md, action.track, version, action.replicas, self.defaults
            )
            await self._ensure(DEPLOYMENTS, manifest)
            return
        # No version to build from (canary finished, or the ModelVersion was deleted): only
        # the replica count is managed; an absent Deployment needs nothing.
        try:
            current = await self.client.get(DEPLOYMENTS, namespace, deployment_name)
        except ApiError as e:
            if e.not_found:
                return
            raise
        _check_owner(md.metadata.uid, current)
        if (current.get("spec") or {}).get("replicas") != action.replicas:
            await self.client.patch(
                DEPLOYMENTS, namespace, deployment_name, serving.scale_patch(action.replicas)
            )

    async def _ensure(self, resource: Resource, manifest: dict[str, Any]) -> None:
        """Create, or merge-patch when it differs; never a second object (409 -> patch)."""
        meta = manifest["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            current = await self.client.get(resource, namespace, name)
        except ApiError as e:
            if not e.not_found:
                raise
            try:
                await self.client.create(resource, namespace, manifest)
                return
            except ApiError as conflict:
                if not conflict.conflict:
                    raise
                current = await self.client.get(resource, namespace, name)
        _check_owner(meta["ownerReferences"][0]["uid"], current)
        desired = {k: manifest[k] for k in ("metadata", "spec")}
        desired["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        if not contains(current, desired):
            await self.client.patch(resource, namespace, name, desired)


@dataclass
class _Monitored:
    status: ModelDeploymentStatus
    events: list[canary.Event] = field(default_factory=list)
    requeue_after: float | None = None
    evaluation: mon.Evaluation | None = None
    version: ModelVersion | None = None
    forget: bool = False

    def record_metrics(self, namespace: str, name: str) -> None:
        """The operator's gauges, once the status that carries the numbers is written."""
        if self.forget:
            monitoring_metrics.forget(namespace, name)
        if self.evaluation is None or self.version is None:
            return
        monitoring_metrics.record(
            namespace,
            name,
            self.version.metadata.name or "",
            self.evaluation.monitoring,
            self.evaluation.live,
            self.version.spec.metrics,
        )


def versions_by_name(versions: list[ModelVersion]) -> dict[str, ModelVersion]:
    return {v.metadata.name: v for v in versions if v.metadata.name}


def _check_owner(uid: str | None, current: Mapping[str, Any]) -> None:
    """An object with the name we need exists and is not ours: a person must sort it out."""
    meta = current.get("metadata") or {}
    if not any(o.get("uid") == uid for o in meta.get("ownerReferences") or []):
        raise Stalled(
            NAME_CONFLICT,
            f"{current.get('kind', 'object')} {meta.get('name')} exists and is not owned by "
            "this ModelDeployment: rename or delete it",
        )


# -- kopf wiring: watch events only enqueue keys -----------------------------------------


def _make_controller() -> DeploymentController:
    settings = OperatorSettings.from_env()
    return DeploymentController(
        KubeClient.from_config(), settings, PrometheusClient(settings.prometheus_url)
    )


@kopf.on.startup()
async def start_deployment_controller(memo: kopf.Memo, **_: Any) -> None:
    DeploymentController.start_in(memo, _make_controller)


@kopf.on.cleanup()
async def stop_deployment_controller(memo: kopf.Memo, **_: Any) -> None:
    await DeploymentController.stop_in(memo)


@kopf.on.event(MODEL_DEPLOYMENTS.group, MODEL_DEPLOYMENTS.version, MODEL_DEPLOYMENTS.plural)
async def model_deployment_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    controller = DeploymentController.in_memo(memo)
    if controller is not None:
        controller.enqueue(key_of(namespace, name), body, deleted=type == "DELETED")


@kopf.on.event(MODEL_VERSIONS.group, MODEL_VERSIONS.version, MODEL_VERSIONS.plural)
async def model_version_event(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    controller = DeploymentController.in_memo(memo)
    model = (body.get("spec") or {}).get("model")
    if controller is not None and model:
        controller.model_version_changed(namespace or "default", str(model))


@kopf.on.event(
    DEPLOYMENTS.group,
    DEPLOYMENTS.version,
    DEPLOYMENTS.plural,
    labels={MODEL_DEPLOYMENT_LABEL: kopf.PRESENT},
)
async def serving_deployment_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller = DeploymentController.in_memo(memo)
    if controller is not None:
        for key in owner_keys(body, KIND):
            controller.queue.add(key)


@kopf.on.event(PODS.group, PODS.version, PODS.plural, labels={MODEL_DEPLOYMENT_LABEL: kopf.PRESENT})
async def serving_pod_event(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    controller = DeploymentController.in_memo(memo)
    if controller is not None:
        label = (body.get("metadata", {}).get("labels") or {}).get(MODEL_DEPLOYMENT_LABEL)
        controller.serving_pod_changed(namespace or "default", label)
