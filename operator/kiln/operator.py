"""`kiln-operator`: runs the kopf handlers of every Kiln kind.

Kiln's handlers are all `on.event` watches that feed the controllers' work queues (see
"Decisions that differ from the usual operator" in docs/architecture.md), so kopf keeps
no last-handled state; what progress it does keep lives in `kiln.dev/…` annotations.
Handlers never return values: a strict status schema would silently drop what kopf writes
under `status.<handler-id>`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, get_args

import kopf

from kiln import telemetry
from kiln.api.model_version import ApprovalState
from kiln.api.wire import GROUP
from kiln.core.training import RUN_FAILURE_REASONS
from kiln.settings import OperatorSettings

logger = logging.getLogger(__name__)

# Set by main() before kopf starts; read by the startup handler.
_RUN_OPTIONS: dict[str, bool] = {"standalone": False}


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """No last-handled state: Kiln's handlers are all `on.event` (watch → work queue).

    kopf builds a deep copy of every watched object on every event to diff it against the
    last handled one, which only change handlers (`on.create/update/resume`) use. Under a
    burst of events that copying was most of the operator's CPU, so it is skipped.
    """

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    if kopf.get_default_registry()._changing.get_all_handlers():
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
    else:
        settings.persistence.diffbase_storage = NoDiffBaseStorage()
    # Kiln posts its own Events on phase changes; kopf's per-handler success events would
    # double the API writes per object.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # Pods, ModelVersions and Deployments are created by create-and-check, so a retried
    # handler never duplicates them; errors are retried with back-off, not forever fast.
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    # Leader safety: without the peering object kopf would silently run unguarded, and two
    # replicas started by mistake would both act; refuse to run instead. kopf applies
    # `mandatory` even in standalone mode, so --standalone must switch it off.
    settings.peering.mandatory = not _RUN_OPTIONS["standalone"]
    if OperatorSettings.from_env().namespaces:
        # A namespace-scoped install has no right to list namespaces; don't try.
        settings.scanning.disabled = True


@kopf.on.startup()
def serve_metrics(**_: Any) -> None:
    port = OperatorSettings.from_env().metrics_port
    from kiln.handlers import deployment, training

    telemetry.zero_known_series(
        kinds=(training.KIND, deployment.KIND),
        failure_reasons=RUN_FAILURE_REASONS,
        approvals=get_args(ApprovalState),
    )
    if port:
        try:
            telemetry.serve(port)
        except OSError as e:  # metrics are not worth refusing to reconcile over
            logger.error("cannot serve /metrics on port %s: %s", port, e)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kiln-operator")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz")
    parser.add_argument("--standalone", action="store_true", help="no peering with replicas")
    args = parser.parse_args(argv)
    _RUN_OPTIONS["standalone"] = args.standalone
    import kiln.handlers  # noqa: F401  (registers the handlers with kopf)

    settings = OperatorSettings.from_env()
    kopf.configure(verbose=False)
    # kopf logs "Handler '…' succeeded" for every watch event; Kiln's handlers only enqueue,
    # and the reconcilers log what they do with the object's reference. Failures still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=args.standalone,
        liveness_endpoint=args.liveness,
    )
