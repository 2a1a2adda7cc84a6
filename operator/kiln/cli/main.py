"""The `kiln` command line."""

from __future__ import annotations

import argparse
import sys

from kiln.cli import lineage, rollout, schema
from kiln.cli.registry import CliError, add_subcommands
from kiln.devcluster.cluster import Cluster, ClusterError


def _dev(args: argparse.Namespace) -> int:
    cluster = Cluster()
    if args.action == "up":
        cluster.up()
    elif args.action == "down":
        cluster.down()
    elif args.action == "status":
        return 0 if cluster.status() else 1
    elif args.action == "env":
        print((cluster.paths.root / "env").read_text(), end="")
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
    dev.set_defaults(func=_dev)
    add_subcommands(sub)
    rollout.register(sub)
    lineage.register(sub)
    schema.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ClusterError, CliError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
