"""Serving benchmark: kiln-serve against MLServer and KServe's Python ModelServer.

Every server gets the same iris logistic regression and the same Open Inference
Protocol v2 bodies, on loopback, driven by `wrk` in the same run. All servers run side
by side and are measured one at a time, in rounds with the order rotated, keeping the
median round (the machine's background load drifts; this spreads it over everyone):

  single-row   4 connections (2 or 1 if p99 >= 10 ms) -> requests/s at p99 < 10 ms
  batch-100    4 connections, 100 rows per request   -> rows/s
  overload     64 and 1,000 connections, 1 row       -> ok/s, p99, share of 503 (shed)
  malformed    a table of bad requests               -> status code per server
  correctness  100 rows                               -> equal to estimator.predict?

Run:  bench/serving/run.sh [--duration 5] [--rounds 3] [--servers kiln,mlserver,kserve]
Figures are printed, never asserted: they depend on the machine and what else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).parent))
# The tests' support code (one free_port) is shared with the benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from peers import CACHE, ServerSpec, kiln_spec, kserve_spec, mlserver_spec
from tests.support.ports import free_port

HERE = Path(__file__).parent
LUA = HERE / "post.lua"
INFER_PATH = "/v2/models/iris/infer"
P99_BOUND_MS = 10.0
T = TypeVar("T")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    refused: int  # answers with a status >= 400 (under overload: kiln's 503 load shedding)
    socket_errors: int

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.refused) / self.seconds if self.seconds else 0.0

    @property
    def refused_share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0


@dataclass
class ServerResult:
    label: str
    single: WrkResult | None = None
    single_connections: int = 4
    batch: WrkResult | None = None
    overload: dict[int, WrkResult] = field(default_factory=dict)
    malformed: dict[str, int | str] = field(default_factory=dict)
    correct: bool | None = None
    error: str = ""


def iris_rows(count: int, seed: int) -> list[list[float]]:
    generator = random.Random(seed)
    return [
        [
            round(generator.uniform(4.3, 7.9), 1),
            round(generator.uniform(2.0, 4.4), 1),
            round(generator.uniform(1.0, 6.9), 1),
            round(generator.uniform(0.1, 2.5), 1),
        ]
        for _ in range(count)
    ]


def infer_body(rows: list[list[float]]) -> bytes:
    tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
    return json.dumps({"inputs": [tensor]}).encode()


def malformed_requests() -> list[tuple[str, str, bytes]]:
    """(label, path, body): each must get a 4xx from a correct server."""

    def tensor(**fields: object) -> bytes:
        base: dict[str, object] = {"name": "input-0", "shape": [1, 4], "datatype": "FP64"}
        base.update(fields)
        return json.dumps({"inputs": [base]}).encode()

    too_large = b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ['
    too_large += b"0.0," * (4 << 20) + b"0.0]}]}"
    return [
        ("malformed JSON", INFER_PATH, b'{"inputs": [{"name": "input-0",'),
        ("body not an object", INFER_PATH, b"[1, 2, 3]"),
        ("no inputs", INFER_PATH, b"{}"),
        ("wrong shape [1,3]", INFER_PATH, tensor(shape=[1, 3], data=[1.0, 2.0, 3.0])),
        ("shape/data mismatch", INFER_PATH, tensor(data=[1.0, 2.0, 3.0])),
        ("ragged nested data", INFER_PATH, tensor(shape=[2, 4], data=[[1, 2, 3, 4], [1, 2]])),
        ("wrong datatype BYTES", INFER_PATH, tensor(datatype="BYTES", data=["a", "b", "c", "d"])),
        ("non-numeric data", INFER_PATH, tensor(data=["a", "b", "c", "d"])),
        ("null in data", INFER_PATH, tensor(data=[1.0, None, 2.0, 3.0])),
        ("empty input [0,4]", INFER_PATH, tensor(shape=[0, 4], data=[])),
        (
            "NaN literal",
            INFER_PATH,
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], '
            b'"datatype": "FP64", "data": [NaN, 1, 2, 3]}]}',
        ),
        ("unknown model", "/v2/models/nope/infer", infer_body(iris_rows(1, 1))),
        ("body of 16 MiB", INFER_PATH, too_large),
    ]


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def running(spec: ServerSpec, log_dir: Path, model: str = "iris") -> Iterator[None]:
    log = (log_dir / (spec.label.replace(" ", "_") + ".log")).open("wb")
    process = subprocess.Popen(
        spec.command, cwd=spec.workdir, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{spec.label} exited with {process.returncode}; see {log.name}")
            with contextlib.suppress(OSError):
                if request(spec.port, "GET", f"/v2/models/{model}/ready")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{spec.label} not ready after 120 s; see {log.name}")
            time.sleep(0.25)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wrk(
    port: int, body_file: Path, connections: int, seconds: float, path: str = INFER_PATH
) -> WrkResult:
    threads = min(2, connections)
    completed = subprocess.run(
        [
            "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s",
            "-s", str(LUA), f"http://127.0.0.1:{port}{path}",
        ],
        env={**os.environ, "WRK_BODY_FILE": str(body_file)},
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )  # fmt: skip
    line = next(x for x in completed.stdout.splitlines() if x.startswith("KILN_RESULT "))
    raw = json.loads(line.removeprefix("KILN_RESULT "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["seconds"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        refused=raw["status_4xx_5xx"],
        socket_errors=raw["errors_connect"] + raw["errors_read"] + raw["errors_timeout"],
    )


def check_correctness(port: int, rows: list[list[float]]) -> bool:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True)
    expected = LogisticRegression(max_iter=1000).fit(features, target).predict(rows).tolist()
    status, body = request(port, "POST", INFER_PATH, infer_body(rows))
    if status != 200:
        return False
    data = json.loads(body)["outputs"][0]["data"]
    rows = data if isinstance(data[0], list) else [[value] for value in data]
    flat = [int(value) for row in rows for value in row]
    return flat == expected


def measure_all(
    specs: list[ServerSpec], files: dict[str, Path], args: argparse.Namespace
) -> list[ServerResult]:
    """All servers run side by side (idle ones cost nothing) and are measured in turns.

    The machine's background load drifts, so each throughput figure is taken in
    `--rounds` rounds, the server order rotated every round, and the median round kept:
    a burst of background load then hits every server alike instead of one of them.
    """
    results = {spec.label: ServerResult(spec.label) for spec in specs}
    singles: dict[str, list[tuple[int, WrkResult]]] = {spec.label: [] for spec in specs}
    batches: dict[str, list[WrkResult]] = {spec.label: [] for spec in specs}
    with contextlib.ExitStack() as stack:
        live: list[ServerSpec] = []
        for spec in specs:
            print(f"==> starting {spec.label}", file=sys.stderr)
            try:
                stack.enter_context(running(spec, files["logs"]))
                live.append(spec)
            except (RuntimeError, OSError) as exc:
                results[spec.label].error = str(exc)
        for spec in live:
            results[spec.label].correct = check_correctness(spec.port, iris_rows(100, 7))
            wrk(spec.port, files["single"], 4, args.warmup)
        for round_index in range(args.rounds):
            shift = round_index % max(1, len(live))
            for spec in live[shift:] + live[:shift]:
                print(f"==> round {round_index + 1}: {spec.label}", file=sys.stderr)
                singles[spec.label].append(single_row_at_p99(spec.port, files, args))
                batches[spec.label].append(wrk(spec.port, files["batch"], 4, args.duration))
        for spec in live:
            result = results[spec.label]
            result.single_connections, result.single = _median(
                singles[spec.label], key=lambda run: run[1].ok_per_second
            )
            result.batch = _median(batches[spec.label], key=lambda run: run.ok_per_second)
            print(f"==> overload and malformed input: {spec.label}", file=sys.stderr)
            for connections in args.overload:
                overload_seconds = max(3.0, args.duration)
                result.overload[connections] = wrk(
                    spec.port, files["single"], connections, overload_seconds
                )
            for label, path, body in malformed_requests():
                try:
                    result.malformed[label] = request(spec.port, "POST", path, body)[0]
                except (OSError, http.client.HTTPException) as exc:
                    result.malformed[label] = type(exc).__name__
    return [results[spec.label] for spec in specs]


def _median(runs: list[T], key: Callable[[T], float]) -> T:
    ordered = sorted(runs, key=key)
    return ordered[len(ordered) // 2]


def single_row_at_p99(
    port: int, files: dict[str, Path], args: argparse.Namespace
) -> tuple[int, WrkResult]:
    """Single-row requests/s at a p99 under 10 ms: 4 connections, fewer if the p99 is over.

    wrk keeps a fixed number of requests in flight, so fewer connections is the way to
    trade throughput for tail latency; the best rate that met the bound is kept (or the
    4-connection run when none did, flagged in the report).
    """
    first = wrk(port, files["single"], 4, args.duration)
    if first.p99_ms < P99_BOUND_MS:
        return 4, first
    for connections in (2, 1):
        run = wrk(port, files["single"], connections, args.duration)
        if run.p99_ms < P99_BOUND_MS:
            return connections, run
    return 4, first


def build_specs(names: list[str], workers: list[int], work: Path) -> list[ServerSpec]:
    specs: list[ServerSpec] = []
    for name in names:
        for count in workers:
            port = free_port()
            if name == "kiln":
                specs.append(kiln_spec(work, port, count))
            elif name == "mlserver":
                # MLServer's HTTP front end is one process; its worker option is the size of
                # the inference process pool (0 = predict in the front-end process).
                specs.append(mlserver_spec(work, port, 0 if count == 1 else count))
            elif name == "kserve":
                specs.append(kserve_spec(work, port, count))
            else:
                raise SystemExit(f"unknown server {name!r}")
    return specs


def print_report(results: list[ServerResult], args: argparse.Namespace) -> None:
    print()
    print(
        f"Serving benchmark: iris logistic regression, wrk, {args.duration:g} s per run, "
        f"median of {args.rounds} rounds, loopback, {os.cpu_count()} cores"
    )
    header = (
        f"{'server':<22}{'1-row req/s':>12}{'conns':>6}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'100-row req/s':>14}{'rows/s':>11}{'p99 ms':>8}  correct"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        if result.error:
            print(f"{result.label:<22}FAILED: {result.error}")
            continue
        single, batch = result.single, result.batch
        assert single is not None and batch is not None
        print(
            f"{result.label:<22}{single.ok_per_second:>12,.0f}{result.single_connections:>6}"
            f"{single.p50_ms:>8.2f}"
            f"{single.p99_ms:>8.2f}{batch.ok_per_second:>14,.0f}"
            f"{batch.ok_per_second * 100:>11,.0f}{batch.p99_ms:>8.2f}  {result.correct}"
        )
    print()
    print("Overload (1-row requests): p99 and share of refused (kiln: 503 shed) answers")
    for result in results:
        if result.error:
            continue
        parts = [
            f"{connections} conns: {run.ok_per_second:,.0f} ok/s, p99 {run.p99_ms:.1f} ms, "
            f"4xx/5xx {run.refused_share:.1%}, socket errors {run.socket_errors}"
            for connections, run in result.overload.items()
        ]
        print(f"  {result.label:<22}" + " | ".join(parts))
    print()
    print("Malformed input -> HTTP status")
    labels = [label for label, _, _ in malformed_requests()]
    ok = [result for result in results if not result.error]
    print(f"  {'request':<24}" + "".join(f"{result.label:>20}" for result in ok))
    for label in labels:
        print(
            f"  {label:<24}" + "".join(f"{result.malformed.get(label, '-')!s:>20}" for result in ok)
        )
    print()
    _print_ratios(ok)


def _print_ratios(results: list[ServerResult]) -> None:
    kiln = [r for r in results if r.label.startswith("kiln")]
    peers = [r for r in results if not r.label.startswith("kiln")]
    if not kiln or not peers:
        return

    def best(group: list[ServerResult], figure: str) -> ServerResult:
        return max(group, key=lambda r: _figure(r, figure))

    print("Ratios kiln / best peer (same run)")
    for figure, text in (("single", "1-row req/s (p99 < 10 ms)"), ("batch", "rows/s, 100-row")):
        for same_workers in (True, False):
            for mine in kiln:
                workers = mine.label.split()[-1]
                group = [p for p in peers if not same_workers or _workers(p) == workers]
                if not group:
                    continue
                peer = best(group, figure)
                ratio = _figure(mine, figure) / max(_figure(peer, figure), 1e-9)
                scope = "same worker count" if same_workers else "any peer config"
                note = _p99_note(mine, peer, figure)
                print(
                    f"  {text:<28}{mine.label:<16} vs {peer.label:<20} {ratio:5.2f}x  "
                    f"({scope}){note}"
                )


def _p99_note(mine: ServerResult, peer: ServerResult, figure: str) -> str:
    """Flag a requests/s figure whose p99 missed the 10 ms bound (noisy machine)."""
    if figure != "single":
        return ""
    late = [
        r.label for r in (mine, peer) if r.single is not None and r.single.p99_ms >= P99_BOUND_MS
    ]
    return f"  [p99 >= 10 ms: {', '.join(late)}]" if late else ""


def _workers(result: ServerResult) -> str:
    last = result.label.split()[-1]
    if last == "process":
        return "w1"
    return "w" + last.lstrip("pw") if last.startswith("pw") else last


def _figure(result: ServerResult, figure: str) -> float:
    run = result.single if figure == "single" else result.batch
    if run is None:
        return 0.0
    return run.ok_per_second * (100 if figure == "batch" else 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (median kept)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--servers", default="kiln,mlserver,kserve")
    parser.add_argument("--workers", default="1,2", help="worker counts to try, e.g. 1 or 1,2")
    parser.add_argument("--overload", default="64,1000", help="connection counts for overload")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.overload = [int(x) for x in args.overload.split(",") if x]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    work = CACHE / "work"
    work.mkdir(parents=True, exist_ok=True)
    files = {"logs": Path(tempfile.mkdtemp(prefix="kiln-bench-logs-"))}
    files["single"] = work / "single.json"
    files["single"].write_bytes(infer_body(iris_rows(1, 3)))
    files["batch"] = work / "batch.json"
    files["batch"].write_bytes(infer_body(iris_rows(100, 5)))
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    workers = [int(x) for x in args.workers.split(",")]
    specs = build_specs(names, workers, work)
    results = measure_all(specs, files, args)
    print_report(results, args)
    print(f"\nserver logs: {files['logs']}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], default=lambda o: o.__dict__,
                                        indent=2))  # fmt: skip
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
