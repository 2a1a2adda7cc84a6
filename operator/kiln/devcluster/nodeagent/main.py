"""`kiln-node-agent run|cleanup`: the dev cluster's kubelet stand-in."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from pathlib import Path

import kiln
from kiln.devcluster import config
from kiln.devcluster.nodeagent import cgroups, logsetup, network
from kiln.devcluster.nodeagent.apiclient import ApiClient
from kiln.devcluster.nodeagent.cleanup import cleanup
from kiln.devcluster.nodeagent.context import NodeContext
from kiln.devcluster.nodeagent.images import IMAGE_MAP_PATH, load_image_map
from kiln.devcluster.nodeagent.logserver import server_ssl_context
from kiln.devcluster.nodeagent.node import (
    NodeRegistration,
    memory_limit_annotations,
    node_resources,
)

log = logging.getLogger("kiln.devcluster.nodeagent")


def _ancestors(path: Path) -> list[Path]:
    return [p for p in [path, *path.parents] if str(p) != "/"]


def runtime_paths() -> list[Path]:
    """What a pod needs to reach: the venv, the interpreter it links to, the project."""
    project = Path(kiln.__file__).resolve().parent.parent
    return [
        Path(sys.executable).parent,
        Path(os.path.realpath(sys.executable)).parent,
        Path(sys.prefix),
        Path(sys.base_prefix),
        project,
    ]


def traverse_dirs(targets: list[Path]) -> list[str]:
    """Directories on the way to the runtime that `runAsUser` processes must traverse."""
    dirs = {str(a) for target in targets for a in _ancestors(target.resolve()) if a.is_dir()}
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def under_pod_tmp(targets: list[Path]) -> list[str]:
    """Runtime directories below /tmp, which pods get as a fresh tmpfs: they are bound back
    in read-only so a checkout (and its venv) living under /tmp still runs in pods."""
    tmp = Path("/tmp")
    inside = {t.resolve() for t in targets if tmp in t.resolve().parents}
    outermost = [d for d in inside if not any(o in d.parents for o in inside)]
    return sorted(str(d) for d in outermost)


def mask_dirs(candidates: list[Path], keep_reachable: list[Path]) -> list[str]:
    """Hide cluster secrets from pods, unless hiding would cut off the runtime."""
    reachable = [t.resolve() for t in keep_reachable]
    masks = []
    for candidate in {c.resolve() for c in candidates}:
        if str(candidate) == "/" or any(
            candidate == r or candidate in r.parents for r in reachable
        ):
            continue
        masks.append(str(candidate))
    return sorted(masks)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln-node-agent", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("KILN_LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="register the node and run its pods")
    run.add_argument("--kubeconfig", type=Path, required=True)
    run.add_argument("--node-name", default=config.NODE_NAME)
    run.add_argument("--state-dir", type=Path, default=config.ClusterPaths.default().node_state)
    run.add_argument("--bridge", default=config.BRIDGE)
    run.add_argument("--pod-cidr", default=str(config.POD_CIDR))
    run.add_argument("--node-ip", default=str(config.GATEWAY_IP))
    run.add_argument("--port", type=int, default=config.NODE_AGENT_PORT)
    run.add_argument("--tls-cert", type=Path, required=True)
    run.add_argument("--tls-key", type=Path, required=True)
    run.add_argument("--client-ca", type=Path, required=True)
    run.add_argument("--image-map", type=Path, default=IMAGE_MAP_PATH)
    clean = commands.add_parser("cleanup", help="remove all pods, namespaces, veths and the bridge")
    clean.add_argument("--state-dir", type=Path, default=config.ClusterPaths.default().node_state)
    clean.add_argument("--bridge", default=config.BRIDGE)
    return parser


async def _run(args: argparse.Namespace) -> None:
    from kiln.devcluster.nodeagent.agent import Agent

    pod_cidr = ipaddress.ip_network(args.pod_cidr)
    node_ip = ipaddress.ip_address(args.node_ip)
    assert isinstance(pod_cidr, ipaddress.IPv4Network) and isinstance(
        node_ip, ipaddress.IPv4Address
    )
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    network.ensure_bridge(args.bridge, node_ip, pod_cidr)
    api = ApiClient.from_kubeconfig(args.kubeconfig)
    reachable = runtime_paths()
    memory: cgroups.MemoryCgroups | None = None
    try:
        memory = cgroups.MemoryCgroups.setup(args.bridge)
        annotations = memory_limit_annotations(memory.description)
        log.info("memory limits enforced", extra={"cgroup": str(memory.root)})
    except cgroups.CgroupUnavailable as exc:
        # Pods still run; the Node's annotations say their limits are not enforced.
        annotations = memory_limit_annotations(None, str(exc))
        log.warning("memory limits are not enforced", extra={"reason": str(exc)})
    ctx = NodeContext(
        api=api,
        node_name=args.node_name,
        node_ip=str(node_ip),
        bridge=args.bridge,
        pod_cidr=pod_cidr,
        gateway=node_ip,
        state_dir=state_dir,
        image_map=load_image_map(args.image_map),
        venv_bin=str(Path(sys.executable).parent),
        traverse=traverse_dirs(reachable),
        expose=under_pod_tmp(reachable),
        mask=mask_dirs([state_dir, args.tls_key.parent, args.kubeconfig.parent], reachable),
        allocatable=node_resources(),
        memory=memory,
    )
    registration = NodeRegistration(
        api, args.node_name, str(node_ip), args.port, str(pod_cidr), annotations
    )
    ssl_context = server_ssl_context(args.tls_cert, args.tls_key, args.client_ca)
    log.info("node agent starting", extra={"node": args.node_name, "stateDir": str(state_dir)})
    await Agent(ctx, registration).run(args.port, ssl_context)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logsetup.configure(args.log_level)
    if args.command == "cleanup":
        cleanup(args.state_dir, args.bridge)
        return 0
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
