"""`kiln approve`, `kiln reject`, `kiln registry`: the model registry from the command line.

Also installed as the kubectl plugin `kubectl-kiln`, so `kubectl kiln approve iris-v3
--reason "reviewed the confusion matrix"` works. Who decided is the authenticated user as
the apiserver sees them (a SelfSubjectReview), or `--as` (then the apiserver also checks
that user's RBAC, by impersonation). The decision goes to the ModelVersion's status with
who, when and why, next to the policy's checks, and an Event records it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from kiln.api.model_version import ModelVersion
from kiln.api.wire import GROUP, LINEAGE_PARENT_VERSION, MODEL_LABEL, VERSION
from kiln.core.approval import ApprovalError, ManualState, decide_manually
from kiln.core.registry import approval_conditions
from kiln.k8s.events import event_manifest

PLURAL = "modelversions"


class CliError(RuntimeError):
    """A failure to report in one line, exit code 1."""


def _api(args: argparse.Namespace) -> Any:
    from kubernetes import config

    api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    if args.as_user:
        api.set_default_header("Impersonate-User", args.as_user)
    return api


def _namespace(args: argparse.Namespace) -> str:
    """--namespace, else the kubeconfig context's namespace, else default."""
    if args.namespace:
        return str(args.namespace)
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
    except Exception:
        return "default"
    chosen = next((c for c in contexts if c["name"] == args.context), active)
    return str((chosen.get("context") or {}).get("namespace") or "default")


def whoami(api: Any, as_user: str | None) -> str:
    """The user the apiserver authenticates (or impersonates) for these credentials."""
    if as_user:
        return as_user
    from kubernetes import client

    auth: Any = client.AuthenticationV1Api(api)
    review = auth.create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    user = review.status.user_info if review.status else None
    name = user.username if user else None
    if not name:
        raise CliError("the apiserver did not say who you are; pass --as USER")
    return str(name)


def decide(args: argparse.Namespace, state: ManualState) -> int:
    from kubernetes import client

    api = _api(args)
    custom: Any = client.CustomObjectsApi(api)
    namespace = _namespace(args)
    try:
        raw = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
    except client.ApiException as e:
        raise CliError(f"modelversion {namespace}/{args.name}: {e.reason}") from e
    version = ModelVersion.model_validate(raw)
    by = whoami(api, args.as_user)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        approval = decide_manually(version.status.approval, state, by, args.reason or "", now)
    except ApprovalError as e:
        raise CliError(str(e)) from e
    status = approval_conditions(version.status, approval, now, version.metadata.generation)
    patch = {
        "metadata": {"resourceVersion": version.metadata.resource_version},
        "status": status.to_wire(),
    }
    try:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, args.name, patch
        )
    except client.ApiException as e:
        if e.status == 409:
            raise CliError(f"{args.name} changed meanwhile: run the command again") from e
        raise CliError(f"cannot record the decision: {e.reason}: {e.body}") from e
    event = event_manifest(
        raw,
        state,
        f"{state.lower()} by {by}: {approval.reason}",
        warning=state == "Rejected",
        component="kiln-cli",
        now=now,
    )
    # The status holds the record; the Event is a convenience.
    with contextlib.suppress(client.ApiException):
        core: Any = client.CoreV1Api(api)
        core.create_namespaced_event(namespace, event)
    print(f"modelversion.{GROUP}/{args.name} {state.lower()} by {by} at {now.isoformat()}")
    return 0


def _metrics(spec: dict[str, Any]) -> str:
    metrics = spec.get("metrics") or {}
    return ",".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())) or "-"


def registry(args: argparse.Namespace) -> int:
    from kubernetes import client

    api = _api(args)
    custom: Any = client.CustomObjectsApi(api)
    selector = f"{MODEL_LABEL}={args.model}" if args.model else None
    if args.all_namespaces:
        answer = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=selector)
    else:
        answer = custom.list_namespaced_custom_object(
            GROUP, VERSION, _namespace(args), PLURAL, label_selector=selector
        )
    items = sorted(
        answer.get("items", []),
        key=lambda i: (
            i["metadata"].get("namespace", ""),
            i["spec"].get("model", ""),
            int(i["spec"].get("version", 0)),
        ),
    )
    if args.output == "json":
        print(json.dumps(items, indent=2, sort_keys=True))
        return 0
    rows = [["NAMESPACE", "NAME", "APPROVAL", "BY", "METRICS", "DATASET", "PARENT", "SOURCE"]]
    for item in items:
        meta, spec = item["metadata"], item["spec"]
        approval = (item.get("status") or {}).get("approval") or {}
        source = spec.get("source") or {}
        data = spec.get("trainingData") or {}
        rows.append(
            [
                meta.get("namespace", ""),
                meta["name"],
                approval.get("state", "Pending"),
                approval.get("by") or "-",
                _metrics(spec),
                f"{data.get('uri', '-')}@{str(data.get('sha256', ''))[:12]}",
                (meta.get("annotations") or {}).get(LINEAGE_PARENT_VERSION, "-"),
                f"{source.get('name', '-')}#{source.get('run', '-')}",
            ]
        )
    if not args.all_namespaces:
        rows = [row[1:] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no model versions)")
    return 0


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "--as", dest="as_user", help="act as this user (impersonation; recorded as who)"
    )


def add_subcommands(sub: Any) -> None:
    for command, state in (("approve", "Approved"), ("reject", "Rejected")):
        parser = sub.add_parser(
            command, help=f"{command} a ModelVersion, recording who, when and why"
        )
        parser.add_argument("name", help="ModelVersion name, e.g. iris-v3")
        parser.add_argument("--reason", "-r", required=command == "reject", help="why")
        add_common(parser)
        parser.set_defaults(func=lambda a, s=state: decide(a, s))
    listing = sub.add_parser(
        "registry", help="list ModelVersions with approval, metrics and lineage"
    )
    listing.add_argument("--model", "-m", help="only this model")
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_common(listing)
    listing.set_defaults(func=registry)
