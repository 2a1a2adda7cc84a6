"""What the controllers see of the objects Kiln created, in the terms `kiln.core` decides on.

A training pod becomes a `PodObservation`; a serving Deployment and its pods a
`TrackObservation`. Only these summaries reach the state machines, so an event that leaves
a summary unchanged (a scheduling condition, an IP) is an event no pass can act on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kiln.api.wire import ATTEMPT_LABEL, MODEL_VERSION_LABEL
from kiln.builders.training_pod import TRAINER_CONTAINER
from kiln.core.canary import TrackObservation, load_failure
from kiln.core.training import ContainerTermination, PodObservation


def observe_pod(pod: Mapping[str, Any]) -> PodObservation:
    """A training pod as the training state machine sees it."""
    metadata = pod.get("metadata") or {}
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


def deployment_version(deployment: Mapping[str, Any]) -> str | None:
    """The ModelVersion a track's Deployment serves (from its pod template)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(MODEL_VERSION_LABEL)
    return str(value) if value else None


def observe_track(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    events: Sequence[str] = (),
) -> TrackObservation:
    """A track's Deployment (absent: None), its pods and their Event messages, summarised."""
    if deployment is None:
        return TrackObservation()
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    replicas = int(spec.get("replicas") or 0)
    observed = status.get("observedGeneration")
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    rolled_out = (
        (generation is None or (observed is not None and int(observed) >= int(generation)))
        and updated >= replicas
        and total <= replicas
    )
    version = deployment_version(deployment)
    current = [
        p
        for p in pods
        if ((p.get("metadata") or {}).get("annotations") or {}).get(MODEL_VERSION_LABEL) == version
    ]
    failure = load_failure([*pod_messages(current), *events])
    return TrackObservation(
        version=version,
        replicas=replicas,
        ready_replicas=int(status.get("readyReplicas") or 0),
        rolled_out=rolled_out,
        failure_reason=failure[0] if failure else None,
        failure_message=failure[1] if failure else "",
    )


def pod_messages(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Termination messages (current and last state) of every container of the pods."""
    texts: list[str] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            for key in ("state", "lastState"):
                terminated = (status.get(key) or {}).get("terminated") or {}
                if terminated.get("message"):
                    texts.append(str(terminated["message"]))
    return texts
