"""Container monitor: sets up one container's sandbox, runs it, records logs and exit.

The node agent starts it as `python -I -S shim.py SPEC.json` in a session of its own, so
it outlives an agent restart (the restarted agent adopts it). It uses the standard library
only. It forks the container process, which joins the pod's network namespace, gets
private mount/UTS/IPC namespaces with an overlay of the host root (upper layer on a tmpfs
that dies with the namespace), volumes bound in, /proc /dev /sys /tmp mounted, then
chroots, drops privileges and execs. The monitor itself stays on the host and:

- prints `started <pid>` (or `failed <message>`) on stdout for the agent, then closes it;
- copies the container's stdout/stderr into the log file, one CRI-format line each
  (`<RFC3339Nano> <stream> <F|P> <text>`), which `kubectl logs` serves;
- writes `state.json` (pid, start time) and, at exit, `exit.json` (code, signal, times).

With `cgroup` in the spec the container process first joins that (memory) cgroup, which
the agent created with the container's limit, so nothing of the container runs outside
it; a failure to join fails the start. The monitor itself stays in its own cgroup.

Starting a Python interpreter costs tens of milliseconds of CPU per container, so the
agent normally runs one `shim.py --serve TAG FD` instead: a fork server that has imported
this module once and forks a monitor per request (on the SOCK_SEQPACKET socket FD: the
spec path, with the monitor's stdout and stderr as passed descriptors; the answer is the
monitor's pid and a pidfd for it). A forked monitor starts its own session and behaves
exactly like one started directly; TAG (the agent's pods dir) stays in its command line
so that `cleanup` finds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import os
import selectors
import signal
import sys
import time
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
LAST_CAPABILITY = 63
PARTIAL_LINE_LIMIT = 16 * 1024
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def now_rfc3339(nanos: bool = False) -> str:
    moment = dt.datetime.now(dt.UTC)
    if nanos:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_in_root(root: str, path: str) -> str:
    """`root`+`path` with symlinks resolved inside `root` (never escaping it)."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"too many symlinks under {path}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure_target(root: str, target: str, is_dir: bool) -> str:
    path = resolve_in_root(root, target)
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            with open(path, "a"):
                pass
    return path


def _bind(root: str, source: str, target: str, read_only: bool) -> None:
    path = _ensure_target(root, target, os.path.isdir(source))
    _mount(source, path, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _mount_dev(root: str) -> None:
    dev = _ensure_target(root, "/dev", True)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name in DEVICES:
        _bind(root, "/dev/" + name, "/dev/" + name, False)
    os.makedirs(dev + "/pts")
    _mount(
        "devpts",
        dev + "/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    os.symlink("pts/ptmx", dev + "/ptmx")
    os.makedirs(dev + "/shm")
    _mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        os.symlink(f"/proc/self/fd/{fd}", f"{dev}/{name}")
    os.symlink("/proc/self/fd", dev + "/fd")


def build_sandbox(spec: dict[str, Any]) -> None:
    """Runs in the container process, as root, before exec."""
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
    hostname = spec["hostname"].encode()
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)

    scratch = spec["scratch"]
    _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    upper, work, root = (os.path.join(scratch, d) for d in ("upper", "work", "root"))
    for directory in (upper, work, root):
        os.mkdir(directory)
    _mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")
    for directory in spec.get("traverse", []):
        path = root + directory
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            os.chmod(path, (mode & 0o7777) | 0o011)  # copied up: the host dir stays 0700
    for hidden in spec.get("mask", []):
        if os.path.isdir(root + hidden):
            _mount("tmpfs", root + hidden, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=755")

    _mount("proc", _ensure_target(root, "/proc", True), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("sysfs", _ensure_target(root, "/sys", True), "sysfs",
           MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)  # fmt: skip
    _mount_dev(root)
    _mount("tmpfs", _ensure_target(root, "/tmp", True), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for mount in spec.get("mounts", []):
        _bind(root, mount["source"], mount["target"], mount["readOnly"])
    # After the volumes: an emptyDir mounted at /tmp must not hide the runtime either.
    for runtime_dir in spec.get("expose", []):
        _bind(root, runtime_dir, runtime_dir, True)
    if spec.get("readOnlyRootFilesystem"):
        _mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)

    os.chdir(root)
    os.chroot(".")
    workdir = spec.get("workingDir") or "/"
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    if spec.get("dropAllCapabilities"):
        for capability in range(LAST_CAPABILITY + 1):
            if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                break  # past the kernel's last capability
    os.setgroups(spec.get("groups", []))
    os.setgid(spec.get("gid", 0))
    os.setuid(spec.get("uid", 0))
    if spec.get("noNewPrivileges"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.umask(0o022)


def join_cgroup(cgroup: str) -> None:
    """Move this process into its memory cgroup (limits set by the agent) before anything
    of the container runs: what it execs inherits the cgroup."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))
    except OSError as exc:  # not an OSError: ENOENT would read as "executable not found"
        raise RuntimeError(f"joining memory cgroup {cgroup}: {exc.strerror}") from exc


def _child(spec: dict[str, Any], out_w: int, err_w: int, report_w: int) -> None:
    try:
        os.setsid()
        if spec.get("cgroup"):
            join_cgroup(spec["cgroup"])
        build_sandbox(spec)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            os.close(fd)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        argv = spec["argv"]
        os.execvpe(argv[0], argv, spec["env"])
    except BaseException as exc:  # report whatever stopped the start, then die
        message = str(exc)
        if isinstance(exc, FileNotFoundError) and "argv" in spec:
            message = f'exec: "{spec["argv"][0]}": executable file not found in $PATH'
        os.write(report_w, message.encode()[:4000] or b"start failed")
    finally:
        os._exit(128)


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def _process_start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[19])


class LogWriter:
    """CRI log lines: `<time> <stream> F <line>`, or `P` for a piece of a long line."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes) -> None:
        buffer = self.pending[stream] + data
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            self._emit(stream, b"F", line)
        while len(rest) > PARTIAL_LINE_LIMIT:
            self._emit(stream, b"P", rest[:PARTIAL_LINE_LIMIT])
            rest = rest[PARTIAL_LINE_LIMIT:]
        self.pending[stream] = rest

    def flush(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self._emit(stream, b"F", rest)
        self.pending = {"stdout": b"", "stderr": b""}

    def _emit(self, stream: str, tag: bytes, line: bytes) -> None:
        os.write(
            self.fd,
            b" ".join((now_rfc3339(nanos=True).encode(), stream.encode(), tag, line)) + b"\n",
        )


def _relay(pid: int, pipes: dict[int, str], log: LogWriter) -> int:
    selector = selectors.DefaultSelector()
    for fd, stream in pipes.items():
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, stream)
    status: int | None = None
    drain_deadline = None
    while True:
        for key, _ in selector.select(timeout=0.2):
            fd = int(key.fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if data:
                log.feed(key.data, data)
            else:
                selector.unregister(fd)
                os.close(fd)
        if status is None:
            waited, raw = os.waitpid(pid, os.WNOHANG)
            if waited:
                status = raw
                drain_deadline = time.monotonic() + 0.3  # descendants may hold the pipes
        if status is not None and (
            not selector.get_map() or time.monotonic() > (drain_deadline or 0)
        ):
            break
    log.flush()
    return status if status is not None else 0


def main(spec_path: str) -> None:
    with open(spec_path) as handle:
        spec = json.load(handle)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    started_at = now_rfc3339()
    pid = os.fork()
    if pid == 0:
        for fd in (out_r, err_r, report_r):
            os.close(fd)
        _child(spec, out_w, err_w, report_w)
    for fd in (out_w, err_w, report_w):
        os.close(fd)

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failure = b""
    while chunk := os.read(report_r, 4096):
        failure += chunk
    os.close(report_r)
    state = {"pid": pid, "monitorPid": os.getpid(), "startedAt": started_at}
    if failure:
        os.waitpid(pid, 0)
        _write_json(spec["exitFile"], {
            "exitCode": 128, "reason": "StartError", "message": failure.decode("utf-8", "replace"),
            "startedAt": started_at, "finishedAt": now_rfc3339(),
        })  # fmt: skip
        _announce(f"failed {failure.decode('utf-8', 'replace')}")
        return
    with contextlib.suppress(OSError, IndexError, ValueError):
        state["pidStartTicks"] = _process_start_ticks(pid)
    _write_json(spec["stateFile"], state)
    _announce(f"started {pid}")
    raw = _relay(pid, {out_r: "stdout", err_r: "stderr"}, LogWriter(spec["logFile"]))
    code = os.waitstatus_to_exitcode(raw)
    result: dict[str, Any] = {"startedAt": started_at, "finishedAt": now_rfc3339()}
    if code < 0:
        result.update(exitCode=128 - code, signal=-code)
    else:
        result["exitCode"] = code
    _write_json(spec["exitFile"], result)


def _announce(line: str) -> None:
    """Tell the agent (if it is still listening) and let go of its pipe."""
    with contextlib.suppress(OSError):
        os.write(1, (line.replace("\n", " ") + "\n").encode())
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def serve(sock_fd: int) -> None:
    """The fork server: one monitor per request until the agent closes the socket."""
    import socket

    sock = socket.socket(fileno=sock_fd)

    def reap(_signum: int, _frame: Any) -> None:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the agent's terminal
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 4096, 2)
        except OSError:
            return
        if not message:
            return  # the agent has gone: monitors live on, the server is not needed
        # No reaping between fork and pidfd_open: the pidfd must name our child.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            _forked_monitor(sock, message.decode(), fds)
        try:
            pidfd = os.pidfd_open(pid)
            reply = [str(pid).encode()]
            socket.send_fds(sock, reply, [pidfd])
            os.close(pidfd)
        except OSError:
            return
        finally:
            for fd in fds:
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _forked_monitor(sock: Any, spec_path: str, fds: list[int]) -> None:
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        sock.close()
        os.setsid()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        main(spec_path)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[3]))
    else:
        main(sys.argv[1])
