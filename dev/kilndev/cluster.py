"""`kiln dev up | down | status`: a real Kubernetes cluster on this machine.

Order of `up`: certificates -> host network -> etcd -> kube-apiserver -> bootstrap objects
-> controller-manager, scheduler, image registry (and the images pushed to it), CoreDNS,
Prometheus, SeaweedFS, then per node containerd and kubelet -> kube-proxy -> wait for Ready
nodes and the default ServiceAccount. Every step is timed and printed. `up` on a healthy
cluster does nothing; `down` removes every process (shims and containers included), network
namespace, bridge, cgroup, mount, iptables chain and file the cluster made.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kilndev import cgroups, components, config, hostnet, nodes, pki, process, services
from kilndev.config import ClusterPaths
from kilndev.nodes import Node


class ClusterError(RuntimeError):
    pass


# containerd puts its shims' sockets (and ctr's fifos) under this fixed directory whatever
# its configured state; a shim killed with its container leaves its socket file there.
CONTAINERD_RUN_DIR = Path("/run/containerd")


def _bound_unix_sockets() -> set[str]:
    with open("/proc/net/unix") as f:
        next(f)
        return {parts[7] for line in f if len(parts := line.split()) > 7}


def _stale_shim_sockets() -> list[Path]:
    """Socket files under /run/containerd/s that no live process is bound to."""
    directory = CONTAINERD_RUN_DIR / "s"
    if not directory.is_dir():
        return []
    bound = _bound_unix_sockets()
    return [p for p in directory.iterdir() if p.is_socket() and str(p) not in bound]


def _registry_digest(reference: str) -> str | None:
    """The digest the local registry serves for `repository:tag`, or None."""
    repository, _, tag = reference.rpartition(":")
    request = urllib.request.Request(
        f"http://{config.registry_address()}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": ", ".join(
                (
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                )
            )
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.headers.get("Docker-Content-Digest")
    except (OSError, urllib.error.HTTPError):
        return None


def _remove_stale_shim_sockets() -> None:
    for path in _stale_shim_sockets():
        path.unlink(missing_ok=True)
    for leftover in (CONTAINERD_RUN_DIR / "s", CONTAINERD_RUN_DIR / "fifo", CONTAINERD_RUN_DIR):
        with suppress(OSError):
            leftover.rmdir()  # only when empty: another containerd may share the directory


def _repository_root() -> Path:
    """The checkout this code runs from (dev/kilndev/cluster.py -> the repository)."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    health: Callable[[], bool]
    env: dict[str, str] | None = None


def _normalised(argv: list[str]) -> list[str]:
    # A console script runs as `python <script> args`: compare from the script on.
    if argv and Path(argv[0]).name.startswith("python") and len(argv) > 1:
        return argv[1:]
    return argv


def _say(msg: str) -> None:
    print(msg, flush=True)


@contextmanager
def _step(what: str) -> Iterator[None]:
    start = time.monotonic()
    _say(f"  - {what} ...")
    yield
    _say(f"    done in {time.monotonic() - start:.1f} s")


class Cluster:
    def __init__(
        self,
        paths: ClusterPaths | None = None,
        bin_dir: Path | None = None,
        nodes: int | None = None,
    ) -> None:
        self.paths = paths or ClusterPaths.default()
        self.bin_dir = bin_dir or config.k8s_bin_dir()
        self.requested_nodes = nodes

    @property
    def _node_count_file(self) -> Path:
        return self.paths.root / "node-count"

    def nodes(self) -> list[Node]:
        """The nodes this cluster has (or will have: `--nodes` may add to a running one)."""
        try:
            existing = int(self._node_count_file.read_text())
        except (OSError, ValueError):
            existing = 0
        count = max(self.requested_nodes or 0, existing) or 1
        return nodes.cluster_nodes(self.paths.nodes, count)

    # ---- health probes -------------------------------------------------------------
    def _admin_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        ctx.load_cert_chain(self.paths.pki / "admin.crt", self.paths.pki / "admin.key")
        return ctx

    def api_get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        url = components.apiserver_url() + path
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self._admin_ssl()) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ssl.SSLError):
            return 0, b""

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def _https_ok(self, url: str) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # component health ports use self-signed certs
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def _node_ready(self, node: Node) -> bool:
        status, body = self.api_get(f"/api/v1/nodes/{node.name}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _registry_ok(self) -> bool:
        return self._http_ok(f"http://{config.registry_address()}/v2/")

    def _containerd_ok(self, node: Node) -> bool:
        ctr = config.containerd_bin_dir() / "ctr"
        done = subprocess.run(
            [str(ctr), f"--address={node.containerd_socket}", "version"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0

    def node_components(self, node: Node) -> list[Component]:
        containerd = config.containerd_bin_dir()
        return [
            Component(
                node.component("containerd"),
                nodes.containerd_argv(containerd / "containerd", node.root / "containerd.toml"),
                lambda: self._containerd_ok(node),
                # containerd finds its runc shim on PATH.
                env={"PATH": f"{containerd}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
            ),
            Component(
                node.component("kubelet"),
                nodes.kubelet_argv(
                    self.bin_dir / "kubelet",
                    node,
                    self.paths.kubeconfig_for(node.name),
                    node.root / "kubelet.yaml",
                ),
                lambda: self._node_ready(node),
            ),
        ]

    def components(self) -> list[Component]:
        b, p = self.bin_dir, self.paths
        return [
            Component(
                "etcd",
                components.etcd(b, p),
                lambda: self._http_ok(f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}/health"),
            ),
            Component(
                "kube-apiserver",
                components.apiserver(b, p),
                lambda: self.api_get("/readyz")[0] == 200,
            ),
            Component(
                "kube-controller-manager",
                components.controller_manager(b, p),
                lambda: self._https_ok("https://127.0.0.1:10257/healthz"),
            ),
            Component(
                "kube-scheduler",
                components.scheduler(b, p),
                lambda: self._https_ok("https://127.0.0.1:10259/healthz"),
            ),
            Component("registry", components.registry(p), self._registry_ok),
            Component(
                "coredns",
                components.coredns(p),
                lambda: self._http_ok(f"http://127.0.0.1:{config.COREDNS_READY_PORT}/ready"),
            ),
            Component(
                "prometheus",
                components.prometheus(p),
                lambda: self._http_ok(services.prometheus_url() + "/-/ready"),
            ),
            Component(
                "seaweedfs",
                components.seaweedfs(p),
                lambda: self._s3_ok(),
            ),
            *[c for node in self.nodes() for c in self.node_components(node)],
            # kube-proxy reads the node's IPs at start and exits when they change, so it
            # starts once the first kubelet has registered the Node with its InternalIP.
            Component(
                "kube-proxy",
                components.kube_proxy(b, p),
                lambda: self._http_ok("http://127.0.0.1:10256/healthz"),
            ),
        ]

    def _s3_ok(self) -> bool:
        # Any HTTP answer (403 for an unsigned request) means the S3 gateway is serving.
        try:
            with urllib.request.urlopen(services.s3_endpoint() + "/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    # ---- lifecycle ---------------------------------------------------------------------
    def is_up(self) -> bool:
        return all(process.running_pid(self.paths.pids, c.name) for c in self.components()) and (
            self.api_get("/readyz")[0] == 200
        )

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One `up`/`down` at a time on this machine (tests and users share the cluster)."""
        lock_path = self.paths.root.parent / f".{self.paths.root.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def up(self) -> None:
        with self._exclusive():
            self._up()

    def _up(self) -> None:
        total = time.monotonic()
        self._check_prerequisites()
        self._check_node_count()
        self._stop_outdated()
        if self.is_up():
            _say(f"kiln dev cluster is already up ({self.paths.root})")
            self._forget_outdated_images()
            self._print_access()
            return
        comps = self.components()
        alive = [c.name for c in comps if process.running_pid(self.paths.pids, c.name)]
        if alive and (self.paths.pki / "ca.crt").exists():
            # Some components died (or were stopped on purpose), or nodes were added:
            # start just those, so the objects and credentials others use survive.
            _say(f"starting the stopped components of the cluster in {self.paths.root}")
            self._prepare_nodes()
            for comp in comps:
                if process.running_pid(self.paths.pids, comp.name) is None:
                    with _step(comp.name):
                        self._start(comp, timeout=90)
            self._write_env()
            _say(f"kiln dev cluster is up in {time.monotonic() - total:.1f} s")
            self._print_access()
            return
        if self.paths.root.exists():
            _say("a previous cluster left state behind: removing it first")
            self._down(quiet=True)
        _say(f"starting the kiln dev cluster in {self.paths.root} ({len(self.nodes())} node(s))")
        with _step("certificates, kubeconfigs and service configuration"):
            self._write_config()
        with _step("host network (bridge, routes, fence) and the nodes' cgroup roots"):
            self._prepare_nodes()
        by_name = {c.name: c for c in comps}
        with _step("etcd"):
            self._start(by_name["etcd"], timeout=30)
        with _step("kube-apiserver"):
            self._start(by_name["kube-apiserver"], timeout=90)
        with _step("bootstrap objects (kiln-system, RBAC, StorageClass, kube-dns)"):
            self.kubectl("apply", "-f", str(self._bootstrap_manifest()))
        services_ = ["kube-controller-manager", "kube-scheduler", "registry", "coredns"]
        services_ += ["prometheus", "seaweedfs"]
        with _step("controller-manager, scheduler, registry, CoreDNS, Prometheus, S3"):
            for name in services_:
                self._spawn(by_name[name])
            for name in services_:
                self._wait_healthy(by_name[name], timeout=90)
        with _step("images into the registry (scripts/push-images.sh)"):
            self._push_images()
        for node in self.nodes():
            with _step(f"node {node.name} ({node.ip}, pods {node.pod_range}): containerd, kubelet"):
                for comp in self.node_components(node):
                    self._start(comp, timeout=90)
        with _step("kube-proxy"):
            self._start(by_name["kube-proxy"], timeout=60)
        with _step("default ServiceAccount"):
            self._wait(
                lambda: (
                    self.api_get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
                ),
                60,
                "the default ServiceAccount",
            )
        self._write_env()
        _say(f"kiln dev cluster is up in {time.monotonic() - total:.1f} s")
        self._print_access()

    def _check_node_count(self) -> None:
        try:
            existing = int(self._node_count_file.read_text())
        except (OSError, ValueError):
            return
        if self.requested_nodes is not None and self.requested_nodes < existing:
            raise ClusterError(
                f"the cluster has {existing} nodes; `kiln dev down` before asking for "
                f"{self.requested_nodes}"
            )

    def _prepare_nodes(self) -> None:
        """Host network, per-node configuration and cgroup roots; idempotent, so nodes can
        be added to a running cluster."""
        node_list = self.nodes()
        hostnet.setup([n.ip for n in node_list])
        server = components.apiserver_url()
        v1 = cgroups.is_v1()
        for node in node_list:
            pki.ensure_certs(self.paths.pki, pki.node_certs(node.name, node.ip))
            identity = f"system:node:{node.name}"
            self.paths.kubeconfig_for(node.name).write_text(
                pki.kubeconfig(server, self.paths.pki, node.name, identity, "kiln-dev")
            )
            for d in (node.cni_conf_dir, node.pod_logs, node.kubelet_dir):
                d.mkdir(parents=True, exist_ok=True)
            (node.root / "containerd.toml").write_text(nodes.containerd_config(node))
            for path, text in nodes.registry_hosts(node).items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            (node.cni_conf_dir / "10-kiln.conflist").write_text(nodes.cni_conflist(node))
            (node.root / "kubelet.yaml").write_text(
                nodes.kubelet_config(node, self.paths.pki, cgroup_v1=v1)
            )
            cgroups.create_root(node.cgroup_root)
        self._node_count_file.write_text(f"{len(node_list)}\n")

    def _push_images(self) -> None:
        script = _repository_root() / "scripts" / "push-images.sh"
        if not script.exists():
            _say(f"    {script} not found: the registry starts empty")
            return
        env = {**os.environ, "KILN_REGISTRY": config.registry_address(), "KILN_PUSH_OPTIONAL": "1"}
        done = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
        for line in (done.stdout + done.stderr).strip().splitlines()[-12:]:
            _say(f"    {line}")
        if done.returncode != 0:
            raise ClusterError(f"pushing the images to the local registry failed ({script})")

    def _forget_outdated_images(self) -> None:
        """Untag, on every node, the images whose tag the registry now gives another digest
        (`make images` pushed a rebuild under the same tag): `IfNotPresent` would keep
        running the old build, so the next pod pulls the new one instead."""
        ctr = str(config.containerd_bin_dir() / "ctr")
        digests: dict[str, str | None] = {}
        for node in self.nodes():
            base = [ctr, f"--address={node.containerd_socket}", "--namespace=k8s.io"]
            listed = subprocess.run(
                [*base, "images", "ls"], capture_output=True, text=True, check=False
            )
            outdated = []
            for line in listed.stdout.splitlines()[1:]:
                fields = line.split()
                if len(fields) < 3 or not fields[0].startswith("docker.io/") or "@" in fields[0]:
                    continue
                ref, digest = fields[0], fields[2]
                if ref not in digests:
                    digests[ref] = _registry_digest(ref.removeprefix("docker.io/"))
                if digests[ref] not in (None, digest):
                    outdated.append(ref)
            if outdated:
                subprocess.run([*base, "images", "rm", *outdated], capture_output=True, check=False)
                _say(f"  {node.name}: forgot rebuilt images {', '.join(outdated)}")

    def _stop_outdated(self) -> None:
        """Stop components running another command line than this checkout would start,
        e.g. a kubelet from another build; `up` then starts them afresh."""
        for comp in self.components():
            argv = process.running_argv(self.paths.pids, comp.name)
            if argv is not None and _normalised(argv) != _normalised(comp.argv):
                _say(f"  - {comp.name} runs another build ({argv[0]}): restarting it")
                process.stop(self.paths.pids, comp.name)

    def down(self, quiet: bool = False) -> None:
        with self._exclusive():
            self._down(quiet)

    def _down(self, quiet: bool) -> None:
        start = time.monotonic()
        node_list = self.nodes()
        # The kubelets first, so no new pod starts; then every container and shim (they
        # outlive containerd by design), then containerd and the control plane.
        order = [n.component("kubelet") for n in node_list]
        for name in order:
            if process.stop(self.paths.pids, name) and not quiet:
                _say(f"  - stopped {name}")
        self._kill_containers()
        order = [n.component("containerd") for n in node_list]
        order += ["kube-proxy", "coredns", "registry", "seaweedfs", "prometheus"]
        order += ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        for name in order:
            if process.stop(self.paths.pids, name) and not quiet:
                _say(f"  - stopped {name}")
        proxy = self.bin_dir / "kube-proxy"
        if proxy.exists():
            subprocess.run([str(proxy), "--cleanup"], check=False, capture_output=True)
        self._unmount_under(self.paths.root)
        _remove_stale_shim_sockets()
        cgroups.remove_tree()
        hostnet.teardown()
        for socket_path in components.seaweedfs_sockets():
            socket_path.unlink(missing_ok=True)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        if not quiet:
            _say(f"kiln dev cluster is down ({time.monotonic() - start:.1f} s)")
        left = (
            hostnet.leftovers()
            + cgroups.leftovers()
            + [f"socket {path}" for path in components.seaweedfs_sockets()]
            + self._mounts_under(self.paths.root)
            + self._processes()
            + [f"socket {path}" for path in _stale_shim_sockets()]
            + ([f"state directory {self.paths.root}"] if self.paths.root.exists() else [])
        )
        if left:
            raise ClusterError("left behind after down: " + ", ".join(left))

    def _kill_containers(self) -> None:
        """SIGKILL every process in the nodes' cgroups and every containerd shim of ours,
        until none is left (a shim exits once its container has)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pids = cgroups.processes_in_tree() | set(self._shim_pids())
            if not pids:
                return
            for pid in pids:
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def _shim_pids(self) -> list[int]:
        marker = str(self.paths.nodes)
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "containerd-shim" in cmdline and marker in cmdline:
                found.append(int(proc.name))
        return found

    def status(self) -> bool:
        healthy = True
        for comp in self.components():
            pid = process.running_pid(self.paths.pids, comp.name)
            ok = pid is not None and comp.health()
            healthy &= ok
            state = "healthy" if ok else ("running, not healthy" if pid else "stopped")
            _say(f"{comp.name:24} {state}{f' (pid {pid})' if pid else ''}")
        left = hostnet.leftovers()
        if left and not healthy:
            _say("host leftovers: " + ", ".join(left))
        if healthy:
            self._print_access()
        return healthy

    # ---- helpers -----------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.paths.admin_kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
        )

    def _check_prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("kiln dev needs root (network namespaces, mounts, iptables)")
        k8s = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
        built = [self.bin_dir / b for b in k8s]
        shim = "containerd-shim-runc-v2"
        built += [config.containerd_bin_dir() / b for b in ("containerd", shim)]
        built += [config.prometheus_bin(), config.registry_bin(), config.coredns_bin()]
        missing = [str(b) for b in built if not b.exists()]
        if missing:
            raise ClusterError(f"missing {', '.join(missing)}: run `make tools` to build them")
        debian = [nodes.RUNC, f"{nodes.CNI_BIN_DIR}/bridge", f"{nodes.CNI_BIN_DIR}/host-local"]
        debian += [f"{nodes.CNI_BIN_DIR}/portmap", f"{nodes.CNI_BIN_DIR}/loopback"]
        absent = [b for b in debian if not Path(b).exists()]
        absent += [t for t in ("ip", "iptables") if not shutil.which(t)]
        if absent:
            raise ClusterError(f"{', '.join(absent)} not found: run `make system-deps`")

    def _write_config(self) -> None:
        p = self.paths
        for d in (p.root, p.logs, p.pids, p.etcd_data, p.nodes, p.s3_data):
            d.mkdir(parents=True, exist_ok=True)
        config.registry_storage().mkdir(parents=True, exist_ok=True)
        pki.write_pki(p.pki)
        server = components.apiserver_url()
        for component, cert in [
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
            ("kube-proxy", "kube-proxy"),
            ("coredns", "coredns"),
        ]:
            p.kubeconfig_for(component).write_text(
                pki.kubeconfig(server, p.pki, cert, component, "kiln-dev")
            )
        admin = pki.kubeconfig(server, p.pki, "admin", "kiln-admin", "kiln-dev")
        p.admin_kubeconfig.write_text(admin)
        p.admin_kubeconfig.chmod(0o600)
        (p.root / "prometheus.yml").write_text(services.prometheus_config(p.pki, server))
        (p.root / "registry.yml").write_text(services.registry_config())
        (p.root / "Corefile").write_text(services.corefile(p.kubeconfig_for("coredns")))
        creds = services.S3Credentials.generate()
        (p.root / "s3.json").write_text(services.seaweedfs_s3_config(creds))
        (p.root / "s3.json").chmod(0o600)

    def _write_env(self) -> None:
        creds = services.S3Credentials.load(self.paths.root / "s3.json")
        env = {
            "KUBECONFIG": str(self.paths.admin_kubeconfig),
            "KILN_PROMETHEUS_URL": services.prometheus_url(),
            "KILN_S3_ENDPOINT": services.s3_endpoint(),
            "AWS_ENDPOINT_URL": services.s3_endpoint(),
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_REGION": "us-east-1",
            # kubectl, then kiln and kubectl-kiln (the plugin) from the project's venv.
            "PATH": f"{self.bin_dir}:{Path(sys.executable).parent}:$PATH",
        }
        lines = [f'export {k}="{v}"' for k, v in env.items()]
        (self.paths.root / "env").write_text("\n".join(lines) + "\n")

    def _print_access(self) -> None:
        _say(f"  kubeconfig: {self.paths.admin_kubeconfig}")
        _say(f"  Prometheus: {services.prometheus_url()}   S3: {services.s3_endpoint()}")
        _say(f"  use it:     source {self.paths.root / 'env'}  (sets KUBECONFIG, PATH, S3 keys)")

    def stop_component(self, name: str) -> bool:
        """Stop one running component (e.g. Prometheus, to test an outage)."""
        return process.stop(self.paths.pids, name)

    def start_component(self, name: str, timeout: float = 90) -> None:
        """Start a stopped component again with its usual argv and wait until healthy."""
        comp = {c.name: c for c in self.components()}[name]
        if process.running_pid(self.paths.pids, name) is None:
            self._start(comp, timeout)

    def _bootstrap_manifest(self) -> Path:
        src = resources.files("kilndev").joinpath("bootstrap.yaml")
        dst = self.paths.root / "bootstrap.yaml"
        dst.write_text(src.read_text())
        return dst

    def _spawn(self, comp: Component) -> None:
        process.spawn(
            comp.name, comp.argv, logs_dir=self.paths.logs, pids_dir=self.paths.pids, env=comp.env
        )

    def _start(self, comp: Component, timeout: float) -> None:
        self._spawn(comp)
        self._wait_healthy(comp, timeout)

    def _wait_healthy(self, comp: Component, timeout: float) -> None:
        def ok() -> bool:
            if process.running_pid(self.paths.pids, comp.name) is None:
                log = self.paths.logs / f"{comp.name}.log"
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise ClusterError(f"{comp.name} exited during start-up; log tail:\n{tail}")
            return comp.health()

        self._wait(ok, timeout, comp.name)

    @staticmethod
    def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _processes(self) -> list[str]:
        """Processes still running one of the cluster's programs or using its state dir."""
        markers = (
            str(self.bin_dir),
            str(config.prometheus_bin()),
            str(config.containerd_bin_dir()),
            str(config.registry_bin()),
            str(config.coredns_bin()),
            str(self.paths.nodes),  # containerd shims (their sockets live there)
            f"-dir={self.paths.s3_data}",  # SeaweedFS
        )
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(m in cmdline for m in markers):
                found.append(f"process {proc.name} ({cmdline[:80]})")
        return found

    @staticmethod
    def _mounts_under(root: Path) -> list[str]:
        prefix = str(root.resolve()) + "/"
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
        return [f"mount {m}" for m in points if m.startswith(prefix)]

    def _unmount_under(self, root: Path) -> None:
        for entry in sorted(self._mounts_under(root), key=len, reverse=True):
            subprocess.run(["umount", "-l", entry.removeprefix("mount ")], check=False)
