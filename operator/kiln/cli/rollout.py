"""`kiln promote|pause|resume|abort MD` and `kiln canary MD [--watch]`.

The commands only set or remove `kiln.dev/…` annotations on the ModelDeployment; the
operator acts on them (and removes the one-shot ones), so `kubectl annotate` works the same:

    kiln pause iris     ==  kubectl annotate md iris kiln.dev/paused=true
    kiln resume iris    ==  kubectl annotate md iris kiln.dev/paused-  (and kiln.dev/retry=<now>
                            when the last rollout was rolled back or failed)
    kiln promote iris   ==  kubectl annotate md iris kiln.dev/promote=<now>
    kiln abort iris     ==  kubectl annotate md iris kiln.dev/abort=<now>
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kiln.api.model_deployment import ModelDeploymentStatus
from kiln.api.wire import (
    ABORT_ANNOTATION,
    GROUP,
    PAUSED_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
    VERSION,
)
from kiln.core.analysis import describe

PLURAL = "modeldeployments"
TERMINAL = ("Promoted", "RolledBack", "Failed")


def _api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig)
    except config.ConfigException:
        config.load_incluster_config()
    return client.CustomObjectsApi()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def annotations_for(command: str, status: dict[str, Any]) -> dict[str, str | None]:
    """The annotation changes a command makes (None removes one). Pure, for tests."""
    if command == "pause":
        return {PAUSED_ANNOTATION: "true"}
    if command == "resume":
        changes: dict[str, str | None] = {PAUSED_ANNOTATION: None}
        if status.get("phase") in ("RolledBack", "Failed") and status.get("failedVersion"):
            changes[RETRY_ANNOTATION] = _stamp()
        return changes
    if command == "promote":
        return {PROMOTE_ANNOTATION: _stamp()}
    if command == "abort":
        return {ABORT_ANNOTATION: _stamp()}
    raise ValueError(f"unknown command {command}")


def _command(args: argparse.Namespace) -> int:
    api = _api(args.kubeconfig)
    body = api.get_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name)
    changes = annotations_for(args.command, body.get("status") or {})
    api.patch_namespaced_custom_object(
        GROUP, VERSION, args.namespace, PLURAL, args.name, {"metadata": {"annotations": changes}}
    )
    print(f"modeldeployment {args.namespace}/{args.name}: {args.command} requested")
    return 0


def render(name: str, status: ModelDeploymentStatus, steps: list[int] | None) -> str:
    """The live view of a rollout (pure, for tests)."""
    lines = [
        f"ModelDeployment {name}: {status.phase or 'Pending'}"
        + (f" ({status.reason})" if status.reason else ""),
        f"  stable  {status.stable_version or '-':<24} replicas {status.stable_replicas}",
        f"  canary  {status.canary_version or '-':<24} replicas {status.canary_replicas}",
    ]
    if status.canary_version:
        total = len(steps) if steps else "?"
        bar_width = 40
        filled = round(bar_width * status.canary_weight / 100)
        lines.append(
            f"  step {status.current_step + 1}/{total}  weight {status.canary_weight}% "
            f"(asked {status.step_weight}%)  [{'#' * filled}{'.' * (bar_width - filled)}]"
        )
        lines.append(
            f"  analyses: {status.failed_analyses} failed, "
            f"{status.inconclusive_analyses} inconclusive in a row"
        )
    if status.failed_version:
        lines.append(f"  failed version: {status.failed_version}")
    if status.message:
        lines.append(f"  {status.message}")
    recent = status.analysis[-6:]
    if recent:
        lines.append("  recent analysis:")
        for result in recent:
            when = result.time.strftime("%H:%M:%S") if result.time else "--:--:--"
            requests = "" if result.requests is None else f" requests={result.requests:.0f}"
            lines.append(f"    {when} step {result.step} {describe(result)}{requests}")
    return "\n".join(lines)


def _canary(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    api = _api(args.kubeconfig)
    deadline = time.monotonic() + args.timeout
    while True:
        body = api.get_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name)
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
        steps = ((body.get("spec") or {}).get("canary") or {}).get("steps")
        view = render(args.name, status, steps)
        if args.watch and sys.stdout.isatty():
            print("\033[2J\033[H", end="")
        print(view, flush=True)
        if not args.watch:
            return 0
        if status.phase in TERMINAL and not status.canary_version and args.until_done:
            return 0 if status.phase == "Promoted" else 1
        if time.monotonic() >= deadline:
            return 0
        if not sys.stdout.isatty():
            print("---", flush=True)
        sleep(args.interval)


def register(sub: Any) -> None:
    """Add the rollout subcommands to the `kiln` parser."""
    for command, text in (
        ("promote", "promote the canary now (skip the remaining steps)"),
        ("pause", "hold the rollout at its current step"),
        ("resume", "continue a paused rollout, or retry a rolled-back version"),
        ("abort", "roll the canary back now"),
    ):
        parser = sub.add_parser(command, help=text)
        _common(parser)
        parser.set_defaults(func=_command, command=command)
    view = sub.add_parser("canary", help="show a ModelDeployment's rollout (live with --watch)")
    _common(view)
    view.add_argument("--watch", "-w", action="store_true", help="refresh until interrupted")
    view.add_argument("--interval", type=float, default=2.0, help="refresh period (s)")
    view.add_argument("--timeout", type=float, default=3600.0, help="stop watching after (s)")
    view.add_argument(
        "--until-done",
        action="store_true",
        help="with --watch: exit when the rollout ends (0 promoted, 1 rolled back or failed)",
    )
    view.set_defaults(func=_canary)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="ModelDeployment name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", default=None)
