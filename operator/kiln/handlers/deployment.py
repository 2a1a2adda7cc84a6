"""ModelDeployment handlers: thin adapters around `kiln.core.canary.step`.

Watch events of ModelDeployments, of the Deployments and pods they own, and of
ModelVersions (a newly Approved version pokes every ModelDeployment following its model)
only enqueue a key; `DeploymentController.reconcile` then observes the world, asks the pure
state machine what to do, runs the Prometheus queries it asks for, and applies the
decision: Deployments and Service created or patched (owner references, idempotent),
one-shot command annotations removed, status written, Events posted, metrics updated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kiln.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from kiln.api.model_version import ModelVersion
from kiln.builders import serving
from kiln.core import canary
from kiln.core.conditions import mark_stalled
from kiln.core.registry import latest_approved
from kiln.k8s.client import (
    MODEL_VERSIONS,
    POD_DISRUPTION_BUDGETS,
    PODS,
    ApiError,
    KubeClient,
    Resource,
)
from kiln.k8s.events import post_event
from kiln.k8s.validation import validation_message
from kiln.k8s.workqueue import WorkQueue, run_workers, stop_workers
from kiln.metrics import RECONCILE_DURATION, RECONCILE_ERRORS
from kiln.metrics import canary as canary_metrics
from kiln.metrics.prometheus_query import PrometheusClient
from kiln.settings import OperatorSettings

logger = logging.getLogger(__name__)

MODEL_DEPLOYMENTS = Resource("kiln.dev", "v1alpha1", "modeldeployments")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")
KIND = "ModelDeployment"

Key = tuple[str, str]


def utcnow() -> datetime:
    return datetime.now(UTC)


def status_patch(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The whole status as a merge patch: fields that became empty are removed (null)."""
    wire = status.to_wire()
    for name, info in ModelDeploymentStatus.model_fields.items():
        wire.setdefault(info.alias or name, None)
    return {"status": wire}


def contains(current: Any, desired: Any) -> bool:
    """Whether `current` already has everything `desired` says (apiserver defaults aside)."""
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            contains(current.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(contains(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)


class OwnershipError(Exception):
    """An object with the name we need exists and is not ours."""


def resolve_target(md: ModelDeployment, versions: list[ModelVersion]) -> canary.Target:
    """The version to serve: the pinned one, or the newest Approved version of the model."""
    spec = md.spec
    if spec.model_version is not None:
        found = next((v for v in versions if v.metadata.name == spec.model_version), None)
        if found is None:
            return canary.Target(
                None, "ModelVersionNotFound", f"ModelVersion {spec.model_version} does not exist"
            )
        if found.status.approval.state == "Rejected":
            return canary.Target(
                None, "ModelVersionRejected", f"ModelVersion {spec.model_version} is Rejected"
            )
        return canary.Target(found.metadata.name)
    newest = latest_approved(versions, spec.model)
    if newest is None:
        return canary.Target(
            None, "NoApprovedVersion", f"no Approved ModelVersion of {spec.model} yet"
        )
    return canary.Target(newest.metadata.name)


@dataclass
class DeploymentController:
    """Reconciles ModelDeployments; one instance per operator process."""

    client: KubeClient
    settings: OperatorSettings
    prometheus: PrometheusClient
    clock: Callable[[], datetime] = utcnow
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    # ModelDeployment -> the model it serves (to find who follows a ModelVersion).
    models: dict[Key, str] = field(default_factory=dict)

    @property
    def defaults(self) -> serving.ServingDefaults:
        return serving.ServingDefaults(
            image=self.settings.server_image, s3_endpoint=self.settings.s3_endpoint
        )

    async def run(self) -> None:
        await run_workers(self.queue, self._timed_reconcile, max(1, self.settings.workers // 4))

    async def _timed_reconcile(self, key: Key) -> float | None:
        started = time.perf_counter()
        try:
            return await self.reconcile(key)
        except Exception:
            RECONCILE_ERRORS.labels(KIND).inc()
            raise
        finally:
            RECONCILE_DURATION.labels(KIND).observe(time.perf_counter() - started)

    # -- watch plumbing ------------------------------------------------------------------
    def model_deployment_changed(self, key: Key, body: Mapping[str, Any], deleted: bool) -> None:
        if deleted:
            self.models.pop(key, None)
            self.queue.forget(key)
            canary_metrics.forget(*key)
            return
        model = (body.get("spec") or {}).get("model")
        if model:
            self.models[key] = str(model)
        self.queue.add(key)

    def model_version_changed(self, namespace: str, model: str) -> None:
        for (ns, name), followed in list(self.models.items()):
            if ns == namespace and followed == model:
                self.queue.add((ns, name))

    # -- one pass ------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        namespace, name = key
        try:
            raw = await self.client.get(MODEL_DEPLOYMENTS, namespace, name)
        except ApiError as e:
            if e.not_found:
                self.models.pop(key, None)
                self.queue.forget(key)
                return None
            raise
        now = self.clock()
        try:
            md = ModelDeployment.model_validate(raw)
        except ValidationError as e:
            await self._stall(raw, "InvalidSpec", validation_message(e), now)
            return None
        self.models[key] = md.spec.model

        versions = await self._versions(namespace)
        target = resolve_target(md, versions)
        tracks = {track: await self._observe(md, track) for track in serving.TRACKS}
        observations = canary.Observations(
            namespace=namespace,
            name=name,
            generation=md.metadata.generation,
            target=target,
            stable=tracks["stable"],
            canary=tracks["canary"],
            commands=canary.commands_from_annotations(md.metadata.annotations),
        )
        decision = canary.step(md.spec, md.status, observations, now)
        if decision.analysis is not None:
            results = await self.prometheus.query_many(decision.analysis.queries)
            now = self.clock()
            decision = canary.step(md.spec, md.status, _with_analysis(observations, results), now)
        by_name = {v.metadata.name: v for v in versions if v.metadata.name}
        try:
            await self._apply(md, decision.actions, by_name)
        except OwnershipError as e:
            await self._stall(raw, "NameConflict", str(e), now)
            return canary.STALLED_RESYNC_SECONDS
        await self.client.patch(
            MODEL_DEPLOYMENTS, namespace, name, status_patch(decision.status), subresource="status"
        )
        for event in decision.events:
            await post_event(
                self.client, raw, event.reason, event.message, warning=event.type == "Warning"
            )
        canary_metrics.record_status(namespace, name, decision.status)
        fresh = [r for r in decision.status.analysis if r not in md.status.analysis]
        canary_metrics.record_analysis(namespace, name, fresh)
        return decision.requeue_after

    async def _versions(self, namespace: str) -> list[ModelVersion]:
        versions = []
        for item in await self.client.list(MODEL_VERSIONS, namespace):
            try:
                versions.append(ModelVersion.model_validate(item))
            except ValidationError:
                continue
        return versions

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
        return serving.observe_track(deployment, pods)

    async def _apply(
        self,
        md: ModelDeployment,
        actions: list[canary.Action],
        versions: dict[str, ModelVersion],
    ) -> None:
        namespace = md.metadata.namespace or "default"
        name = md.metadata.name or ""
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
            elif isinstance(action, canary.RemoveAnnotation):
                await self.client.patch(
                    MODEL_DEPLOYMENTS,
                    namespace,
                    name,
                    {"metadata": {"annotations": {action.key: None}}},
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
        self._check_owner(md, current)
        if (current.get("spec") or {}).get("replicas") != action.replicas:
            await self.client.patch(
                DEPLOYMENTS, namespace, deployment_name, serving.scale_patch(action.replicas)
            )

    def _check_owner(self, md: ModelDeployment, current: Mapping[str, Any]) -> None:
        owners = (current.get("metadata") or {}).get("ownerReferences") or []
        if not any(o.get("uid") == md.metadata.uid for o in owners):
            meta = current.get("metadata") or {}
            raise OwnershipError(
                f"{current.get('kind', 'object')} {meta.get('name')} exists and is not owned "
                f"by ModelDeployment {md.metadata.name}: rename or delete it"
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
        owners = (current.get("metadata") or {}).get("ownerReferences") or []
        uid = meta["ownerReferences"][0]["uid"]
        if not any(o.get("uid") == uid for o in owners):
            raise OwnershipError(
                f"{manifest['kind']} {name} exists and is not owned by this ModelDeployment: "
                "rename or delete it"
            )
        desired = {k: manifest[k] for k in ("metadata", "spec")}
        desired["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        if not contains(current, desired):
            await self.client.patch(resource, namespace, name, desired)

    async def _stall(self, raw: dict[str, Any], reason: str, message: str, now: datetime) -> None:
        meta = raw.get("metadata") or {}
        try:
            status = ModelDeploymentStatus.model_validate(raw.get("status") or {})
        except ValidationError:
            status = ModelDeploymentStatus()
        generation = meta.get("generation")
        status.observed_generation = generation
        status.message = message[:4096]
        status.reason = reason
        status.conditions = mark_stalled(status.conditions, reason, message, now, generation)
        await self.client.patch(
            MODEL_DEPLOYMENTS,
            meta.get("namespace") or "default",
            meta["name"],
            status_patch(status),
            subresource="status",
        )
        await post_event(self.client, raw, reason, message, warning=True)


def _with_analysis(
    observations: canary.Observations, results: Mapping[str, Any]
) -> canary.Observations:
    from dataclasses import replace

    return replace(observations, analysis=dict(results))


# -- kopf wiring -------------------------------------------------------------------------

_controller: DeploymentController | None = None
_tasks: list[asyncio.Task[None]] = []


def controller() -> DeploymentController | None:
    return _controller


@kopf.on.startup()
async def start_deployment_controller(**_: Any) -> None:
    global _controller
    settings = OperatorSettings.from_env()
    _controller = DeploymentController(
        KubeClient.from_config(), settings, PrometheusClient(settings.prometheus_url)
    )
    _tasks.append(asyncio.get_running_loop().create_task(_controller.run()))


@kopf.on.cleanup()
async def stop_deployment_controller(**_: Any) -> None:
    global _controller
    if _controller is None:
        return
    await stop_workers(_controller.queue, _tasks)
    await _controller.client.close()
    await _controller.prometheus.close()
    _controller = None


@kopf.on.event("kiln.dev", "v1alpha1", "modeldeployments")
async def model_deployment_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    if _controller is not None:
        _controller.model_deployment_changed(
            (namespace or "default", name), body, deleted=type == "DELETED"
        )


@kopf.on.event("kiln.dev", "v1alpha1", "modelversions")
async def model_version_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    model = (body.get("spec") or {}).get("model")
    if _controller is not None and model:
        _controller.model_version_changed(namespace or "default", str(model))


@kopf.on.event("apps", "v1", "deployments", labels={serving.MODEL_DEPLOYMENT_LABEL: kopf.PRESENT})
async def serving_deployment_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    _poke_owner(body, namespace)


@kopf.on.event("", "v1", "pods", labels={serving.MODEL_DEPLOYMENT_LABEL: kopf.PRESENT})
async def serving_pod_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    if _controller is None:
        return
    label = (body.get("metadata", {}).get("labels") or {}).get(serving.MODEL_DEPLOYMENT_LABEL)
    for ns, name in list(_controller.models):
        if (
            ns == (namespace or "default")
            and serving.selector_labels(name)[serving.MODEL_DEPLOYMENT_LABEL] == label
        ):
            _controller.queue.add((ns, name))


def _poke_owner(body: Mapping[str, Any], namespace: str | None) -> None:
    if _controller is None:
        return
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == KIND and str(owner.get("apiVersion", "")).startswith("kiln.dev/"):
            _controller.queue.add((namespace or "default", owner["name"]))
