"""`kiln dev up | down | status`: a real Kubernetes control plane on this machine.

Order of `up`: certificates -> host network -> etcd -> kube-apiserver -> bootstrap objects
-> controller-manager, scheduler, node agent, kube-proxy -> Prometheus, SeaweedFS -> wait
for a Ready node and the default ServiceAccount. Every step is timed and printed.
`up` on a healthy cluster does nothing; `down` removes every process, network namespace,
bridge, memory cgroup, mount and file the cluster made.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kiln.devcluster import components, config, hostnet, pki, process, services
from kiln.devcluster.config import ClusterPaths
from kiln.devcluster.nodeagent import cgroups


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    health: Callable[[], bool]


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
    def __init__(self, paths: ClusterPaths | None = None, bin_dir: Path | None = None) -> None:
        self.paths = paths or ClusterPaths.default()
        self.bin_dir = bin_dir or config.k8s_bin_dir()

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

    def _node_ready(self) -> bool:
        status, body = self.api_get(f"/api/v1/nodes/{config.NODE_NAME}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

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
            Component("node-agent", components.node_agent(p), self._node_ready),
            Component(
                "kube-proxy",
                components.kube_proxy(b, p),
                lambda: self._http_ok("http://127.0.0.1:10256/healthz"),
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
        self._stop_outdated()
        if self.is_up():
            _say(f"kiln dev cluster is already up ({self.paths.root})")
            self._print_access()
            return
        comps = self.components()
        alive = [c.name for c in comps if process.running_pid(self.paths.pids, c.name)]
        if alive and (self.paths.pki / "ca.crt").exists():
            # Some components died (or were stopped on purpose): restart just those, so
            # the objects and credentials others are using survive.
            _say(f"restarting the stopped components of the cluster in {self.paths.root}")
            hostnet.setup()
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
        _say(f"starting the kiln dev cluster in {self.paths.root}")
        with _step("certificates, kubeconfigs and service configuration"):
            self._write_config()
        with _step("host network (bridge, routes, fence)"):
            hostnet.setup()
        by_name = {c.name: c for c in comps}
        with _step("etcd"):
            self._start(by_name["etcd"], timeout=30)
        with _step("kube-apiserver"):
            self._start(by_name["kube-apiserver"], timeout=90)
        with _step("bootstrap objects (kiln-system, RBAC, StorageClass)"):
            self.kubectl("apply", "-f", str(self._bootstrap_manifest()))
        with _step("controller-manager, scheduler, node agent, Prometheus, S3"):
            rest = [n for n in by_name if n not in ("etcd", "kube-apiserver", "kube-proxy")]
            for name in rest:
                self._spawn(by_name[name])
            for name in rest:
                self._wait_healthy(by_name[name], timeout=90)
        # kube-proxy reads the node's IPs at start and exits when they change, so it starts
        # once the node agent has registered the Node with its InternalIP.
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

    def _stop_outdated(self) -> None:
        """Stop components running another command line than this checkout would start,
        e.g. a node agent from another clone's venv; `up` then starts them afresh."""
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
        # The node agent first, so no new pod starts while the control plane goes away.
        order = [
            "node-agent",
            "kube-proxy",
            "seaweedfs",
            "prometheus",
            "kube-scheduler",
            "kube-controller-manager",
            "kube-apiserver",
            "etcd",
        ]
        for name in order:
            if process.stop(self.paths.pids, name) and not quiet:
                _say(f"  - stopped {name}")
        agent = components.node_agent(self.paths)[0]
        if Path(agent).exists() or shutil.which(agent):
            subprocess.run(
                [
                    agent,
                    "cleanup",
                    f"--state-dir={self.paths.node_state}",
                    f"--bridge={config.BRIDGE}",
                ],
                check=False,
            )
        proxy = self.bin_dir / "kube-proxy"
        if proxy.exists():
            subprocess.run([str(proxy), "--cleanup"], check=False, capture_output=True)
        hostnet.teardown()
        for socket_path in components.seaweedfs_sockets():
            socket_path.unlink(missing_ok=True)
        self._unmount_under(self.paths.root)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        if not quiet:
            _say(f"kiln dev cluster is down ({time.monotonic() - start:.1f} s)")
        left = (
            hostnet.leftovers()
            + self._cgroups()
            + [f"socket {path}" for path in components.seaweedfs_sockets()]
            + self._mounts_under(self.paths.root)
            + self._processes()
        )
        if left:
            raise ClusterError("left behind after down: " + ", ".join(left))

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
        missing = [
            b
            for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
            if not (self.bin_dir / b).exists()
        ]
        if not config.prometheus_bin().exists():
            missing.append(str(config.prometheus_bin()))
        if missing:
            raise ClusterError(f"missing {', '.join(missing)}: run `make tools` to build them")
        for tool in ("ip", "iptables"):
            if not shutil.which(tool):
                raise ClusterError(f"{tool} not found: run `make system-deps`")

    def _write_config(self) -> None:
        p = self.paths
        for d in (p.root, p.logs, p.pids, p.etcd_data, p.node_state, p.s3_data):
            d.mkdir(parents=True, exist_ok=True)
        pki.write_pki(p.pki)
        server = components.apiserver_url()
        for component, cert in [
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
            ("kube-proxy", "kube-proxy"),
            ("node-agent", "node-agent"),
        ]:
            p.kubeconfig_for(component).write_text(
                pki.kubeconfig(server, p.pki, cert, component, "kiln-dev")
            )
        admin = pki.kubeconfig(server, p.pki, "admin", "kiln-admin", "kiln-dev")
        p.admin_kubeconfig.write_text(admin)
        p.admin_kubeconfig.chmod(0o600)
        (p.root / "prometheus.yml").write_text(services.prometheus_config(p.pki, server))
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
        src = resources.files("kiln.devcluster").joinpath("bootstrap.yaml")
        dst = self.paths.root / "bootstrap.yaml"
        dst.write_text(src.read_text())
        return dst

    def _spawn(self, comp: Component) -> None:
        process.spawn(comp.name, comp.argv, logs_dir=self.paths.logs, pids_dir=self.paths.pids)

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
            f"--state-dir={self.paths.node_state}",  # the node agent
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
    def _cgroups() -> list[str]:
        """The node's memory cgroup trees (`kiln/<bridge>`), in any cgroup hierarchy."""
        return [f"cgroup {root}" for root in cgroups.node_roots(config.BRIDGE)]

    @staticmethod
    def _mounts_under(root: Path) -> list[str]:
        prefix = str(root.resolve()) + "/"
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
        return [f"mount {m}" for m in points if m.startswith(prefix)]

    def _unmount_under(self, root: Path) -> None:
        for entry in sorted(self._mounts_under(root), key=len, reverse=True):
            subprocess.run(["umount", "-l", entry.removeprefix("mount ")], check=False)
