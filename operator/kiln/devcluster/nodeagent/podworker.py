"""One pod's lifecycle on this node: sandbox, volumes, containers, probes, status.

A worker reacts to changes of its Pod (from the watch) and to its own timers (back-off,
token refresh), serialising everything in `sync`. Decisions come from the pure modules
(`podstatus`, `backoff`, `probes`, `envvars`, `volumes`); this module applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from kiln.devcluster.nodeagent import (
    backoff,
    cgroups,
    envvars,
    images,
    network,
    probes,
    procscan,
)
from kiln.devcluster.nodeagent import volumes as volume_plans
from kiln.devcluster.nodeagent.apiclient import ApiError
from kiln.devcluster.nodeagent.containers import (
    Attempt,
    ContainerDir,
    StartFailed,
    adopt_attempt,
    exec_in_container,
    start_attempt,
    stop_attempt,
)
from kiln.devcluster.nodeagent.context import NodeContext, now_rfc3339
from kiln.devcluster.nodeagent.fieldrefs import PodAddresses
from kiln.devcluster.nodeagent.logformat import tail_text
from kiln.devcluster.nodeagent.podstatus import (
    ContainerView,
    Running,
    State,
    Terminated,
    Waiting,
    exit_reason,
    pod_status,
    termination_message,
)
from kiln.devcluster.nodeagent.podvolumes import PodVolumes, remove_volumes, setup_volumes
from kiln.devcluster.nodeagent.security import SecurityError, process_identity

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0
RESYNC_SECONDS = 10.0
DEFAULT_GRACE_SECONDS = 30


class StartupTrace:
    """Offsets (ms) of a pod's start-up steps since its worker began, logged once Running."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.steps: dict[str, float] = {}
        self.logged = False

    def mark(self, step: str) -> None:
        if not self.logged:
            self.steps.setdefault(step, round((time.monotonic() - self.t0) * 1000, 1))


def _terminated(data: Mapping[str, Any]) -> Terminated:
    return Terminated(
        exit_code=int(data["exitCode"]),
        reason=data.get("reason") or exit_reason(int(data["exitCode"])),
        started_at=data.get("startedAt") or "",
        finished_at=data.get("finishedAt") or "",
        message=data.get("message") or "",
        signal=data.get("signal"),
    )


class ContainerRuntime:
    """The agent's memory of one container across attempts (persisted in record.json)."""

    def __init__(self, spec: Mapping[str, Any], directory: ContainerDir, is_init: bool):
        self.spec = spec
        self.name: str = spec["name"]
        self.dir = directory
        self.is_init = is_init
        record = directory.read_json(directory.record) or {}
        self.restart_count: int = record.get("restartCount", 0)
        self.crash_count: int = record.get("crashCount", 0)
        self.finished: dict[str, Any] | None = record.get("finished")
        self.before: dict[str, Any] | None = record.get("before")
        self.next_start_at: float = record.get("nextStartAt", 0.0)
        self.attempts: int = record.get("attempts", 0)
        self.attempt: Attempt | None = None
        self.waiting: Waiting | None = None
        self.env: dict[str, str] = record.get("env", {})
        self.uid: int = record.get("uid", 0)
        self.gid: int = record.get("gid", 0)
        self.cgroup: str | None = record.get("cgroup")  # the current attempt's memory cgroup
        self.probe_results: dict[str, bool | None] = {}
        self.probe_tasks: list[asyncio.Task[None]] = []
        self.exit_processed = asyncio.Event()

    def save(self) -> None:
        self.dir.path.mkdir(parents=True, exist_ok=True)
        record = {
            "restartCount": self.restart_count,
            "crashCount": self.crash_count,
            "finished": self.finished,
            "before": self.before,
            "nextStartAt": self.next_start_at,
            "attempts": self.attempts,
            "env": self.env,
            "uid": self.uid,
            "gid": self.gid,
            "cgroup": self.cgroup,
        }
        tmp = self.dir.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.dir.record)

    @property
    def running(self) -> bool:
        return self.attempt is not None and not self.exit_processed.is_set()

    def succeeded(self) -> bool:
        return not self.running and self.finished is not None and self.finished["exitCode"] == 0

    def wants_restart(self, restart_policy: str) -> bool:
        if self.running or self.finished is None:
            return False
        policy = "OnFailure" if self.is_init and restart_policy == "Always" else restart_policy
        return backoff.should_restart(policy, int(self.finished["exitCode"]))

    def view(self, pod_spec: Mapping[str, Any], pod_label: str, deleting: bool) -> ContainerView:
        last = _terminated(self.before) if self.before else None
        state: State
        ready = started = False
        if self.running:
            assert self.attempt is not None
            state = Running(self.attempt.started_at)
            last = _terminated(self.finished) if self.finished else None
            started = self.probe_results.get("startup", True) is True
            ready = (
                started and self.probe_results.get("readiness", True) is True and not self.is_init
            )
        elif self.waiting is not None:
            state = self.waiting
            last = _terminated(self.finished) if self.finished else None
        elif self.finished is not None:
            if not deleting and self.wants_restart(pod_spec.get("restartPolicy", "Always")):
                delay = int(backoff.restart_delay(self.crash_count))
                state = Waiting(
                    "CrashLoopBackOff",
                    f"back-off {delay}s restarting failed container={self.name} pod={pod_label}",
                )
                last = _terminated(self.finished)
            else:
                state = _terminated(self.finished)
                ready = self.is_init and self.finished["exitCode"] == 0
        else:
            state = Waiting("ContainerCreating")
        return ContainerView(
            name=self.name,
            image=self.spec.get("image", ""),
            state=state,
            container_id=f"kiln://{self.dir.path.parent.parent.name}/{self.name}/{self.attempts}"
            if self.attempts
            else "",
            last_state=last,
            restart_count=self.restart_count,
            ready=ready,
            started=started,
        )


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: dict[str, Any]):
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.dir = ctx.pods_dir / self.uid
        self.wakeup = asyncio.Event()
        self.gone = False
        self.done = asyncio.Event()
        self.finished_pod = False
        self.network: network.PodNetwork | None = None
        self.volumes = PodVolumes(self.dir / "volumes")
        self.volumes_ready = False
        self.volume_error: str | None = None
        self.sandbox_error: str | None = None
        self.last_status: dict[str, Any] | None = None
        saved = self._read_pod_record()
        self.start_time: str = saved.get("startTime") or now_rfc3339()
        self.pod_ip: str | None = saved.get("ip")
        spec = pod["spec"]
        containers_dir = self.dir / "containers"
        self.init = [
            ContainerRuntime(c, ContainerDir(containers_dir / c["name"]), True)
            for c in spec.get("initContainers") or []
        ]
        self.main = [
            ContainerRuntime(c, ContainerDir(containers_dir / c["name"]), False)
            for c in spec.get("containers") or []
        ]
        self.task: asyncio.Task[None] | None = None
        self.trace = StartupTrace()

    # -- identity ---------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def label(self) -> str:
        return f"{self.name}_{self.namespace}({self.uid})"

    def container(self, name: str) -> ContainerRuntime | None:
        return next((c for c in [*self.init, *self.main] if c.name == name), None)

    def _read_pod_record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.dir / "pod.json").read_text())
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write_pod_record(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "ip": self.pod_ip,
            "startTime": self.start_time,
        }
        (self.dir / "pod.json").write_text(json.dumps(record))

    # -- driving ----------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.wakeup.set()

    def vanish(self) -> None:
        """The Pod is gone from the API (force-deleted): stop everything now."""
        self.gone = True
        self.wakeup.set()

    async def _run(self) -> None:
        self._adopt()
        self.trace.mark("worker.run")
        while not self.done.is_set():
            self.wakeup.clear()
            try:
                timeout = await self.sync()
            except Exception:
                log.exception("pod sync failed", extra={"pod": self.label})
                timeout = RETRY_SECONDS
            if self.done.is_set():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=timeout)

    def _adopt(self) -> None:
        """Pick up containers a previous agent process left running (or exited meanwhile)."""
        for runtime in [*self.init, *self.main]:
            if runtime.attempts == 0:
                continue
            attempt = adopt_attempt(runtime.dir)
            if attempt is not None:
                self.trace.logged = True  # started by an earlier agent process
                runtime.attempt = attempt
                self._watch(runtime)
                self._start_probes(runtime, self._reported(runtime.name))
                log.info("adopted container", extra={"pod": self.label, "container": runtime.name})
            elif runtime.dir.state.exists():
                self._record_exit(runtime)

    # -- the reconcile step -----------------------------------------------------------
    async def sync(self) -> float:
        """One pass; returns seconds until the next pass is due."""
        metadata = self.pod["metadata"]
        if self.gone or metadata.get("deletionTimestamp"):
            await self._shut_down()
            return 0
        if self.finished_pod:
            return RESYNC_SECONDS
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not any(
            c.attempts for c in [*self.init, *self.main]
        ):
            self.finished_pod = True  # terminal before we ever ran it: never run it again
            return RESYNC_SECONDS
        first_start = not any(c.attempts for c in [*self.init, *self.main])
        release = await self.ctx.startup.enter() if first_start else None
        try:
            next_due = RESYNC_SECONDS
            if not await self._prepare():
                next_due = RETRY_SECONDS
            else:
                next_due = min(next_due, await self._start_containers())
            if self.volumes.refresh_at != float("inf"):
                next_due = min(next_due, max(self.volumes.refresh_at - time.time(), 0.5))
            status = await self._report()
        finally:
            if release is not None:
                release()
        if status["phase"] in ("Succeeded", "Failed") and not self._any_running():
            self.finished_pod = True
            await self._release_network()
            await self._remove_cgroups()
        return next_due

    def _any_running(self) -> bool:
        return any(c.running for c in [*self.init, *self.main])

    # -- sandbox and volumes ----------------------------------------------------------
    async def _prepare(self) -> bool:
        """Sandbox and volumes, set up concurrently; True when both are ready."""
        if self.network is not None:
            return await self._ensure_volumes()
        ip: str | None = None
        with contextlib.suppress(Exception):  # _ensure_sandbox retries and reports it
            ip = self._acquire_ip()  # first: downwardAPI volumes may show the pod IP
        sandbox_ok, volumes_ok = await asyncio.gather(
            self._ensure_sandbox(ip), self._ensure_volumes()
        )
        return sandbox_ok and volumes_ok

    def _acquire_ip(self) -> str:
        ip = self.ctx.ipam.acquire(self.uid)
        self.pod_ip = ip
        self._write_pod_record()
        return ip

    async def _ensure_sandbox(self, ip: str | None = None) -> bool:
        if self.network is not None:
            return True
        try:
            self.trace.mark("sandbox.begin")
            if ip is None:
                ip = self._acquire_ip()
            self.trace.mark("sandbox.ipam")
            # `ip` runs in a thread: a slow netlink call must not hold up other pods.
            self.network = await asyncio.get_running_loop().run_in_executor(
                _SETUP_THREADS,
                network.setup_pod_network,
                self.uid, ip, self.ctx.bridge, self.ctx.gateway, self.ctx.pod_cidr,
            )  # fmt: skip
        except Exception as exc:
            message = f"failed to set up the pod network: {exc}"
            if message != self.sandbox_error:
                self.ctx.event(self.pod, "FailedCreatePodSandBox", message, warning=True)
            self.sandbox_error = message
            log.warning("sandbox failed", extra={"pod": self.label, "error": str(exc)})
            return False
        self.sandbox_error = None
        self.trace.mark("sandbox.done")
        return True

    @property
    def addresses(self) -> PodAddresses:
        return PodAddresses(pod_ip=self.pod_ip or "", host_ip=self.ctx.node_ip)

    async def _ensure_volumes(self) -> bool:
        if self.volumes_ready and self.volumes.refresh_at > time.time():
            return True
        try:
            await setup_volumes(
                self.ctx.api, self.pod, self.volumes, self.addresses, self.ctx.allocatable
            )
        except (volume_plans.VolumeError, ApiError, OSError) as exc:
            message = f"MountVolume.SetUp failed: {exc}"
            if message != self.volume_error:
                self.ctx.event(self.pod, "FailedMount", message, warning=True)
            self.volume_error = message
            return self.volumes_ready  # a failed token refresh keeps running containers
        self.volume_error = None
        self.volumes_ready = True
        self.trace.mark("volumes.done")
        return True

    # -- containers -------------------------------------------------------------------
    async def _start_containers(self) -> float:
        """Start what is due, in kubelet's order; returns seconds until the next start."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        now = time.time()
        for runtime in self.init:
            if runtime.running:
                return RESYNC_SECONDS
            if runtime.succeeded():
                continue
            if runtime.finished is not None and not runtime.wants_restart(policy):
                return RESYNC_SECONDS  # failed for good: the pod is Failed
            if runtime.next_start_at > now:
                return runtime.next_start_at - now
            await self._start(runtime)
            return RESYNC_SECONDS
        next_due = RESYNC_SECONDS
        for runtime in self.main:
            if runtime.running:
                continue
            if runtime.finished is not None and not runtime.wants_restart(policy):
                continue
            if runtime.next_start_at > now:
                next_due = min(next_due, runtime.next_start_at - now)
                continue
            await self._start(runtime)
        return next_due

    async def _objects_for_env(self, container: Mapping[str, Any]) -> envvars.EnvSources:
        """The ConfigMaps, Secrets and Services the env refers to, read concurrently.

        Services come from the agent's watch-fed cache when it is synced (as kubelet's
        informer), otherwise from the API.
        """
        api = self.ctx.api
        namespace = self.namespace
        configmap_refs, secret_refs = envvars.referenced_objects(container)
        configmap_names, secret_names = sorted(configmap_refs), sorted(secret_refs)
        cache = self.ctx.services
        cached_kubernetes = cache.get("default", "kubernetes") if cache else False
        links = self.pod["spec"].get("enableServiceLinks", True)
        cached_namespace = cache.namespace(namespace) if cache and links else None

        async def none() -> Any:
            return None

        found = await asyncio.gather(
            *(
                api.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
                for name in configmap_names
            ),
            *(
                api.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")
                for name in secret_names
            ),
            api.get_or_none("/api/v1/namespaces/default/services/kubernetes")
            if cached_kubernetes is False
            else none(),
            api.get_or_none(f"/api/v1/namespaces/{namespace}/services")
            if links and cached_namespace is None
            else none(),
        )
        configmaps: dict[str, dict[str, str]] = {}
        secrets: dict[str, dict[str, str]] = {}
        for name, obj in zip(configmap_names, found, strict=False):
            if obj is not None:
                configmaps[name] = dict(obj.get("data") or {})
        for name, obj in zip(secret_names, found[len(configmap_names) :], strict=False):
            if obj is not None:
                secrets[name] = envvars.decode_secret_data(obj)
        kubernetes, listed = found[-2], found[-1]
        if cached_kubernetes is not False:
            kubernetes = cached_kubernetes
        if cached_namespace is not None:
            listed = {"items": cached_namespace}
        services: list[dict[str, Any]] = []
        if kubernetes is not None:
            services.append(kubernetes)
        if links:
            for service in (listed or {}).get("items") or []:
                if namespace != "default" or service["metadata"]["name"] != "kubernetes":
                    services.append(service)
        return envvars.EnvSources(
            configmaps, secrets, envvars.service_env(services), self.ctx.allocatable
        )

    def _home_of(self, uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_dir
        except KeyError:
            return "/"

    async def _container_spec(self, runtime: ContainerRuntime) -> dict[str, Any]:
        """The monitor's instructions; raises ImageError/EnvError/SecurityError/VolumeError."""
        container = runtime.spec
        image = container.get("image", "")
        image_entry = images.find_image(image, self.ctx.image_map)
        argv = images.resolve_argv(
            image, container.get("command"), container.get("args"), self.ctx.image_map
        )
        identity = process_identity(
            self.pod["spec"], container, image_entry.user if image_entry else None
        )
        sources = await self._objects_for_env(container)
        self.trace.mark("env.objects")
        env = envvars.resolve_env(self.pod, container, self.addresses, sources)
        env = envvars.with_defaults(env, self.ctx.venv_bin, self.name, self._home_of(identity.uid))
        argv = envvars.expand_argv(argv, env)
        mounts = volume_plans.mount_plan(container, self.volumes.roots, env)
        message_path = container.get("terminationMessagePath") or "/dev/termination-log"
        hosts = self._write_hosts()
        runtime.env, runtime.uid, runtime.gid = env, identity.uid, identity.gid
        return {
            "argv": argv,
            "env": env,
            "workingDir": container.get("workingDir") or "/",
            "hostname": self.name[:63],
            "netns": self.network.netns_path if self.network else None,
            "uid": identity.uid,
            "gid": identity.gid,
            "groups": list(identity.groups),
            "noNewPrivileges": identity.no_new_privileges,
            "dropAllCapabilities": identity.drop_all_capabilities,
            "readOnlyRootFilesystem": identity.read_only_root,
            "traverse": self.ctx.traverse,
            "expose": self.ctx.expose,
            "mask": self.ctx.mask,
            "mounts": [
                {"source": str(hosts), "target": "/etc/hosts", "readOnly": False},
                *(
                    {"source": m.source, "target": m.target, "readOnly": m.read_only}
                    for m in mounts
                ),
                {
                    "source": str(runtime.dir.termination_log),
                    "target": message_path,
                    "readOnly": False,
                },
            ],
        }

    def _write_hosts(self) -> Path:
        path = self.dir / "hosts"
        if not path.exists():
            path.write_text(
                "# Kubernetes-managed hosts file (kiln node agent).\n"
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                f"{self.pod_ip}\t{self.name}\n"
            )
        return path

    async def _start(self, runtime: ContainerRuntime) -> None:
        try:
            spec = await self._container_spec(runtime)
        except images.ImageError as exc:
            self._set_waiting(runtime, exc.reason, exc.message)
            return
        except (envvars.EnvError, SecurityError, volume_plans.VolumeError) as exc:
            self._set_waiting(runtime, "CreateContainerConfigError", str(exc))
            return
        try:
            cgroup = self._memory_cgroup(runtime, runtime.attempts + 1)
        except (OSError, ValueError) as exc:
            # Never run a limited container without its limit: retry like kubelet does.
            self._set_waiting(runtime, "CreateContainerError", f"memory cgroup: {exc}")
            return
        spec["cgroup"] = str(cgroup) if cgroup else None
        runtime.cgroup = spec["cgroup"]
        runtime.waiting = None
        if runtime.attempts:
            runtime.restart_count += 1
        runtime.attempts += 1
        runtime.dir.prepare_attempt()
        runtime.exit_processed = asyncio.Event()
        runtime.probe_results = {}
        runtime.save()
        self.trace.mark("shim.spawn")
        try:
            runtime.attempt = await start_attempt(runtime.dir, spec)
            self.trace.mark("shim.started")
        except StartFailed as exc:
            runtime.attempt = None
            self.ctx.event(
                self.pod, "Failed", f"Error: {exc}", warning=True, container=runtime.name
            )
            self._record_exit(runtime)
            return
        log.info(
            "container started",
            extra={"pod": self.label, "container": runtime.name, "pid": runtime.attempt.pid},
        )
        self.ctx.event(
            self.pod, "Started", f"Started container {runtime.name}", container=runtime.name
        )
        self._watch(runtime)
        self._start_probes(runtime)

    def _memory_cgroup(self, runtime: ContainerRuntime, attempt: int) -> Path | None:
        """The attempt's cgroup with the container's memory limit; None when the container
        has no limit or the node cannot enforce limits (the Node says so)."""
        limit = cgroups.memory_limit_bytes(runtime.spec)
        if limit is None or self.ctx.memory is None:
            return None
        return self.ctx.memory.create(self.uid, runtime.name, attempt, limit)

    def _set_waiting(self, runtime: ContainerRuntime, reason: str, message: str) -> None:
        if runtime.waiting != Waiting(reason, message):
            self.ctx.event(
                self.pod, "Failed", f"Error: {message}", warning=True, container=runtime.name
            )
        runtime.waiting = Waiting(reason, message)
        runtime.next_start_at = time.time() + RETRY_SECONDS

    def _watch(self, runtime: ContainerRuntime) -> None:
        attempt = runtime.attempt
        assert attempt is not None

        async def wait_for_exit() -> None:
            await attempt.exited.wait()
            if runtime.attempt is attempt:
                self._record_exit(runtime)
                self.wakeup.set()

        self.ctx.background(wait_for_exit())

    def _record_exit(self, runtime: ContainerRuntime) -> None:
        """Fold the finished attempt into the record: state, message, back-off."""
        for task in runtime.probe_tasks:
            task.cancel()
        runtime.probe_tasks = []
        data = runtime.dir.read_json(runtime.dir.exit)
        if data is None:
            state = runtime.dir.read_json(runtime.dir.state) or {}
            data = {
                "exitCode": 137,
                "reason": "Error",
                "message": "the container's monitor process vanished",
                "startedAt": state.get("startedAt", ""),
                "finishedAt": now_rfc3339(),
            }
        exit_code = int(data["exitCode"])
        oom_killed = False
        if runtime.cgroup:
            # The kernel's count of OOM kills in the attempt's own cgroup; read before the
            # cgroup goes (stray descendants keep it until the pod is torn down).
            oom_killed = bool(cgroups.oom_kills(Path(runtime.cgroup)))
            cgroups.remove_empty(Path(runtime.cgroup))
            runtime.cgroup = None
        try:
            written = runtime.dir.termination_log.read_bytes()[:4096].decode("utf-8", "replace")
        except OSError:
            written = ""
        log_tail = ""
        policy = runtime.spec.get("terminationMessagePolicy", "File")
        if policy == "FallbackToLogsOnError" and exit_code != 0 and not written.strip():
            with contextlib.suppress(OSError):
                log_tail = tail_text(runtime.dir.log.read_bytes())
        message = termination_message(written, policy, exit_code, log_tail)
        reason = data.get("reason") or exit_reason(exit_code)
        if data.get("reason") == "StartError":
            message = data.get("message", "")
        elif oom_killed:
            reason = exit_reason(exit_code, oom_killed=True)
        finished = {
            "exitCode": exit_code,
            "reason": reason,
            "message": message,
            "startedAt": data.get("startedAt", ""),
            "finishedAt": data.get("finishedAt", ""),
            "signal": data.get("signal"),
        }
        run_seconds = _seconds_between(finished["startedAt"], finished["finishedAt"])
        runtime.before, runtime.finished = runtime.finished, finished
        runtime.crash_count = backoff.next_crash_count(runtime.crash_count, run_seconds)
        runtime.next_start_at = time.time() + backoff.restart_delay(runtime.crash_count)
        runtime.exit_processed.set()
        runtime.save()
        for stale in (runtime.dir.state, runtime.dir.exit):
            stale.unlink(missing_ok=True)
        log.info(
            "container exited",
            extra={
                "pod": self.label,
                "container": runtime.name,
                "exitCode": exit_code,
                "reason": reason,
            },
        )
        policy_restart = self.pod["spec"].get("restartPolicy", "Always")
        if runtime.wants_restart(policy_restart) and backoff.restart_delay(runtime.crash_count) > 0:
            self.ctx.event(
                self.pod, "BackOff", "Back-off restarting failed container", True, runtime.name
            )

    # -- probes -----------------------------------------------------------------------
    def _reported(self, name: str) -> dict[str, Any]:
        """What the API last heard about a container (an adopted one keeps its readiness)."""
        statuses = (self.pod.get("status") or {}).get("containerStatuses") or []
        return next((s for s in statuses if s.get("name") == name), {})

    def _start_probes(
        self, runtime: ContainerRuntime, reported: Mapping[str, Any] | None = None
    ) -> None:
        if runtime.is_init:
            return
        known = {
            "readiness": (reported or {}).get("ready") is True,
            "startup": (reported or {}).get("started") is True,
        }
        for kind in ("startup", "readiness", "liveness"):
            probe = runtime.spec.get(f"{kind}Probe")
            if probe:
                initial = probes.initial_state(kind).result
                runtime.probe_results[kind] = True if known.get(kind) else initial
                task = asyncio.get_running_loop().create_task(
                    self._probe_loop(runtime, kind, probe)
                )
                runtime.probe_tasks.append(task)

    async def _probe_loop(
        self, runtime: ContainerRuntime, kind: str, probe: Mapping[str, Any]
    ) -> None:
        settings = probes.ProbeSettings.from_spec(probe)
        state = probes.ProbeState(result=runtime.probe_results.get(kind))
        await asyncio.sleep(settings.initial_delay)
        while runtime.running:
            if kind != "startup" and runtime.probe_results.get("startup", True) is not True:
                await asyncio.sleep(min(settings.period, 1.0))
                continue
            ok = await self._probe_once(runtime, probe, settings)
            if not ok:
                self.ctx.event(
                    self.pod, "Unhealthy", f"{kind.capitalize()} probe failed", True, runtime.name
                )
            state = probes.record(state, settings, ok)
            if runtime.probe_results.get(kind) != state.result:
                runtime.probe_results[kind] = state.result
                self.wakeup.set()
            if state.result is False and kind in ("liveness", "startup"):
                self.ctx.event(
                    self.pod,
                    "Killing",
                    f"Container {runtime.name} failed {kind} probe, will be restarted",
                    container=runtime.name,
                )
                if runtime.attempt is not None:
                    grace = probe.get("terminationGracePeriodSeconds") or self._grace_seconds()
                    await stop_attempt(runtime.attempt, float(grace))
                return
            if kind == "startup" and state.result is True:
                return
            await asyncio.sleep(settings.period)

    async def _probe_once(
        self, runtime: ContainerRuntime, probe: Mapping[str, Any], settings: probes.ProbeSettings
    ) -> bool:
        try:
            action = probes.probe_action(probe)
            if action == "httpGet":
                return await self._http_get(probe, runtime.spec, settings.timeout)
            if action == "tcpSocket":
                port = probes.resolve_port(probe["tcpSocket"]["port"], runtime.spec)
                host = probe["tcpSocket"].get("host") or self.pod_ip or ""
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), settings.timeout
                )
                writer.close()
                return True
            if action == "exec" and runtime.attempt is not None:
                code, _ = await exec_in_container(
                    runtime.attempt,
                    list(probe["exec"]["command"]),
                    runtime.env,
                    runtime.uid,
                    runtime.gid,
                    settings.timeout,
                )
                return code == 0
        except (TimeoutError, OSError, ValueError, aiohttp.ClientError):
            return False
        return False

    async def _http_get(
        self, handler: Mapping[str, Any], container: Mapping[str, Any], limit_seconds: float
    ) -> bool:
        url = probes.http_url(handler, container, self.pod_ip or "")
        headers = {h["name"]: h["value"] for h in handler["httpGet"].get("httpHeaders") or []}
        headers.setdefault("User-Agent", "kube-probe/1.37")
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_seconds)) as session,
            session.get(url, headers=headers, ssl=False, allow_redirects=False) as response,
        ):
            return probes.http_ok(response.status)

    # -- termination ------------------------------------------------------------------
    def _grace_seconds(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))

    async def _stop_container(self, runtime: ContainerRuntime, grace: float) -> None:
        attempt = runtime.attempt
        if attempt is None or not runtime.running:
            return
        deadline = time.monotonic() + grace
        pre_stop = ((runtime.spec.get("lifecycle") or {}).get("preStop")) or {}
        if pre_stop and grace > 0 and not self.gone:
            with contextlib.suppress(Exception):
                if "exec" in pre_stop:
                    await exec_in_container(
                        attempt, list(pre_stop["exec"]["command"]), runtime.env, runtime.uid,
                        runtime.gid, grace,
                    )  # fmt: skip
                elif "httpGet" in pre_stop:
                    await self._http_get(pre_stop, runtime.spec, grace)
                elif "sleep" in pre_stop:
                    await asyncio.sleep(min(float(pre_stop["sleep"]["seconds"]), grace))
        self.ctx.event(
            self.pod, "Killing", f"Stopping container {runtime.name}", container=runtime.name
        )
        await stop_attempt(attempt, max(deadline - time.monotonic(), 0.0))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(runtime.exit_processed.wait(), timeout=5)

    async def _shut_down(self) -> None:
        """Graceful deletion: preStop, SIGTERM, grace period, SIGKILL, then remove the pod."""
        metadata = self.pod["metadata"]
        grace = (
            0.0
            if self.gone
            else float(metadata.get("deletionGracePeriodSeconds", self._grace_seconds()))
        )
        await asyncio.gather(*(self._stop_container(c, grace) for c in [*self.init, *self.main]))
        await self.teardown()
        if not self.gone:
            with contextlib.suppress(ApiError):
                await self._report(terminal=True)
            try:
                await self.ctx.api.request(
                    "DELETE",
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                )
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
        log.info("pod removed", extra={"pod": self.label})
        self.done.set()

    async def _release_network(self) -> None:
        # Scanning /proc, waiting for processes and `ip` run in a thread: a pod going away
        # must not hold up the others starting.
        await _in_teardown_thread(_remove_pod_network, self.uid)
        self.ctx.ipam.release(self.uid)
        self.network = None

    async def _remove_cgroups(self) -> None:
        """The pod's memory cgroups, once its processes are gone (stragglers are killed)."""
        if self.ctx.memory is not None:
            await _in_teardown_thread(cgroups.remove_tree, self.ctx.memory.pod(self.uid))

    async def teardown(self) -> None:
        """Remove everything the pod had on the host."""
        for runtime in [*self.init, *self.main]:
            for task in runtime.probe_tasks:
                task.cancel()
        await self._release_network()
        await self._remove_cgroups()
        await _in_teardown_thread(remove_volumes, self.volumes)
        await _in_teardown_thread(shutil.rmtree, self.dir, True)

    # -- status -----------------------------------------------------------------------
    def views(self, deleting: bool = False) -> tuple[list[ContainerView], list[ContainerView]]:
        spec = self.pod["spec"]
        init_views = [c.view(spec, self.label, deleting) for c in self.init]
        main_views = []
        init_done = all(c.succeeded() for c in self.init)
        for runtime in self.main:
            view = runtime.view(spec, self.label, deleting)
            if not init_done and runtime.attempts == 0:
                view = ContainerView(view.name, view.image, Waiting("PodInitializing"))
            main_views.append(view)
        return init_views, main_views

    async def _report(self, terminal: bool = False) -> dict[str, Any]:
        init_views, main_views = self.views(deleting=terminal)
        status = pod_status(
            self.pod,
            init_views,
            main_views,
            pod_ip=self.pod_ip,
            host_ip=self.ctx.node_ip,
            start_time=self.start_time,
            sandbox_ready=self.network is not None,
            now=now_rfc3339(),
            terminal=terminal,
        )
        if status != self.last_status:
            self.trace.mark(f"patch.{status['phase']}.sent")
            await self.ctx.api.request(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                body={"status": status},
                # A merge patch replaces the lists whole: no stale keys survive inside a
                # condition or container state (a strategic merge would keep them).
                content_type="application/merge-patch+json",
            )
            self.last_status = status
            self.trace.mark(f"patch.{status['phase']}.done")
            if status["phase"] == "Running" and not self.trace.logged:
                self.trace.logged = True
                log.info("observed pod startup", extra={"pod": self.label, **self.trace.steps})
        return status


# Separate pools: pods being removed (which may wait seconds for processes to go) never
# hold up the sandboxes of pods starting.
_SETUP_THREADS = ThreadPoolExecutor(4, thread_name_prefix="sandbox-setup")
_TEARDOWN_THREADS = ThreadPoolExecutor(4, thread_name_prefix="sandbox-teardown")


async def _in_teardown_thread(function: Callable[..., Any], *args: Any) -> None:
    await asyncio.get_running_loop().run_in_executor(_TEARDOWN_THREADS, function, *args)


def _remove_pod_network(uid: str) -> None:
    netns, _ = network.names_for(uid)
    inode = network.netns_inode(netns)
    if inode is not None:
        stray = procscan.pids_in_netns({inode})
        procscan.kill_all(stray)
        procscan.wait_gone(stray, 2.0)
    network.teardown_pod_network(uid)


def _seconds_between(start: str, end: str) -> float:
    from kiln.devcluster.nodeagent.logformat import parse_time

    try:
        return (parse_time(end) - parse_time(start)).total_seconds()
    except ValueError:
        return 0.0
