"""core/v1 Events about Kiln objects (what `kubectl describe` and `kubectl events` show)."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from typing import Any

from kiln.k8s.client import EVENTS, ApiError, KubeClient

logger = logging.getLogger(__name__)

COMPONENT = "kiln-operator"
MAX_EVENT_MESSAGE = 1024


def event_manifest(
    involved: dict[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool = False,
    component: str = COMPONENT,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An Event about `involved` (an object as the apiserver returned it)."""
    metadata = involved.get("metadata", {})
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{metadata.get('name', 'kiln')}.",
            "namespace": metadata.get("namespace") or "default",
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_event(
    client: KubeClient,
    involved: dict[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool = False,
    component: str = COMPONENT,
) -> None:
    """Post an Event; a failure is logged, never raised (Events are best effort)."""
    body = event_manifest(involved, reason, message, warning=warning, component=component)
    try:
        await client.create(EVENTS, body["metadata"]["namespace"], body)
    except (ApiError, OSError) as e:
        logger.warning("could not post event %s: %s", reason, e)
