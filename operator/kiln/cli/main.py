"""The `kiln` command line."""

from __future__ import annotations

import argparse
import sys

from kiln.cli import baseline, compare, lineage, monitor, rollout, runs, schema, trials
from kiln.cli.versions import CliError, add_subcommands


def _dev(args: argparse.Namespace) -> int:
    # The local cluster is tooling of the Kiln repository (dev/kilndev, on the venv's path),
    # not part of what the images install.
    try:
        from kilndev.cluster import Cluster, ClusterError
    except ImportError:
        raise CliError(
            "`kiln dev` runs from a checkout of the Kiln repository (scripts/bootstrap-venv.sh)"
        ) from None
    cluster = Cluster(nodes=args.nodes)
    try:
        if args.action == "up":
            cluster.up()
        elif args.action == "down":
            cluster.down()
        elif args.action == "status":
            return 0 if cluster.status() else 1
        elif args.action == "env":
            print((cluster.paths.root / "env").read_text(), end="")
    except ClusterError as e:
        raise CliError(str(e)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="the local Kubernetes cluster (real control plane, no Docker)")
    dev.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="up: start (idempotent); down: remove everything; status: health; env: exports",
    )
    dev.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="up: how many kubelet nodes (default 1, or as many as the running cluster has)",
    )
    dev.set_defaults(func=_dev)
    add_subcommands(sub)
    rollout.register(sub)
    monitor.register(sub)
    lineage.register(sub)
    schema.register(sub)
    baseline.register(sub)
    trials.register(sub)
    compare.register(sub)
    runs.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
