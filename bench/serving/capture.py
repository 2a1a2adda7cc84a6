"""Monitoring cost benchmark: kiln-serve with data capture off against 100 % capture.

The same iris model served three times side by side on loopback, one worker each:

  plain     no baseline, no capture (the server as before monitoring)
  baseline  the training baseline loaded: every input value and prediction counted into
            the baseline's drift bins
  capture   the baseline, and every request captured (sample rate 1.0) into a real
            SeaweedFS S3 started on loopback for the run (tests/support/s3.py)
  capture-file  the same capture into file:// objects: the server's own capture cost
            without the S3 server's CPU, which on a small machine competes with kiln-serve
            and wrk for the same cores

driven by `wrk` with the same OIP v2 bodies, measured one at a time in rounds with the
order rotated (the machine's background load drifts; this spreads it over all three),
the median round kept:

  1-row, 1 connection            one request at a time, as fast as answered
  1-row, 4 connections           saturation: requests/s, latency with queueing
  1-row, 4 connections +2 ms     each connection pausing 2 ms between requests (about
                                 1,700 requests/s): latency below saturation
  100-row, 4 connections         rows/s (100 capture records per request)
  100-row, 4 connections +10 ms  about 35,000 rows/s, below saturation

It prints p50/p99 per configuration and the ratios capture/baseline and
baseline/plain, then what capture wrote: records written / dropped / failed (from the
server's own counters) and the objects and lines found in the bucket.

    bench/serving/capture.sh                       # 3 rounds of 5 s (~6 min)
    bench/serving/capture.sh --duration 3 --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from peers import ServerSpec  # noqa: E402
from run import WrkResult, free_port, infer_body, iris_rows, request, running, wrk  # noqa: E402
from tests.support.s3 import running_seaweedfs  # noqa: E402

CONFIGS = ("plain", "baseline", "capture", "capture-file")
# name, connections, rows, pause in ms before each request (0: as fast as answered)
LOADS = (
    ("1-row", 1, 1, 0),
    ("1-row", 4, 1, 0),
    ("1-row", 4, 1, 2),
    ("100-row", 4, 100, 0),
    ("100-row", 4, 100, 10),
)
PACED_LUA = HERE / "paced.lua"


@dataclass
class Figures:
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)

    def median(self, load: str) -> WrkResult:
        ordered = sorted(self.runs[load], key=lambda r: r.p99_ms)
        return ordered[len(ordered) // 2]


def load_key(name: str, connections: int, pause: int) -> str:
    return f"{name} c{connections}" + (f" +{pause}ms" if pause else "")


def paced_wrk(
    port: int, body_file: Path, connections: int, seconds: float, pause: int
) -> WrkResult:
    """wrk with a pause before every request (paced.lua): latency below saturation."""
    import subprocess

    completed = subprocess.run(
        [
            "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(PACED_LUA),
            f"http://127.0.0.1:{port}/v2/models/iris/infer",
        ],
        env={**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_DELAY_MS": str(pause)},
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


def write_model(work: Path) -> tuple[Path, str, Path, str]:
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from kiln.contract.monitoring import Baseline, Distribution, FeatureProfile

    features, target = load_iris(return_X_y=True)
    model = work / "model.skops"
    model.write_bytes(sio.dumps(LogisticRegression(max_iter=1000).fit(features, target)))
    profiles = []
    for index, name in enumerate(("sepal_length", "sepal_width", "petal_length", "petal_width")):
        edges = np.unique(np.quantile(features[:, index], np.linspace(0.1, 0.9, 9))).tolist()
        shares = [1 / (len(edges) + 1)] * (len(edges) + 1)
        profiles.append(
            FeatureProfile(
                name=name, kind="numeric", distribution=Distribution(edges=edges, shares=shares)
            )
        )
    labels = Distribution(labels=["0", "1", "2"], shares=[1 / 3] * 3)
    baseline = work / "baseline.json"
    baseline.write_bytes(
        Baseline(rows=150, features=profiles, predictions=labels).model_dump_json().encode()
    )

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return model, digest(model), baseline, digest(baseline)


def spec(config: str, work: Path, bucket: str, files: tuple[Path, str, Path, str]) -> ServerSpec:
    model, model_sha, baseline, baseline_sha = files
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "kiln-serve"),
        "--model-name=iris",
        "--model-version=1",
        f"--artifact-uri={model}",
        f"--artifact-sha256={model_sha}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--log-level=WARNING",
    ]
    if config != "plain":
        command += [f"--baseline-uri={baseline}", f"--baseline-sha256={baseline_sha}"]
    if config.startswith("capture"):
        where = f"s3://{bucket}/bench" if config == "capture" else f"file://{work}/captured"
        command += [
            f"--capture-destination={where}",
            "--capture-sample-rate=1.0",
            "--namespace=bench",
            "--deployment=iris",
            "--pod-name=bench-pod",
        ]
    return ServerSpec(config, command, work, port)


def capture_counts(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    _, text = request(port, "GET", "/metrics")
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "kiln_capture_records_total":
                counts[sample.labels["result"]] = sample.value
            elif sample.name == "kiln_capture_queue_depth":
                counts["queued"] = sample.value
    return counts


def stored(client: object, bucket: str) -> tuple[int, int]:
    objects = lines = 0
    paginator = client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects += 1
            got = client.get_object(Bucket=bucket, Key=item["Key"])  # type: ignore[attr-defined]
            body = got["Body"].read()
            lines += body.count(b"\n")
    return objects, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median kept)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-capture-"))
    files = write_model(work)
    bodies = {}
    for name, _, rows, _ in LOADS:
        bodies[name] = work / f"{name}.json"
        bodies[name].write_bytes(infer_body(iris_rows(rows, seed=rows)))
    figures = {config: Figures() for config in CONFIGS}
    with running_seaweedfs(work / "s3") as s3, contextlib.ExitStack() as stack:
        bucket = s3.create_bucket("capture-bench")
        os.environ.update(s3.env())  # the servers inherit the store's endpoint and keys
        specs = [spec(config, work, bucket, files) for config in CONFIGS]
        for server in specs:
            stack.enter_context(running(server, work))
            wrk(server.port, bodies["1-row"], 4, 1.0)  # warm-up
        for round_index in range(args.rounds):
            shift = round_index % len(specs)
            for server in specs[shift:] + specs[:shift]:
                print(f"==> round {round_index + 1}: {server.label}", file=sys.stderr)
                for name, connections, _, pause in LOADS:
                    if pause:
                        result = paced_wrk(
                            server.port, bodies[name], connections, args.duration, pause
                        )
                    else:
                        result = wrk(server.port, bodies[name], connections, args.duration)
                    key = load_key(name, connections, pause)
                    figures[server.label].runs.setdefault(key, []).append(result)
        capture_port = specs[CONFIGS.index("capture")].port
        deadline = time.monotonic() + 30  # let the writer finish (flush every 10 s)
        while capture_counts(capture_port).get("queued", 0) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(11)
        counts = capture_counts(capture_port)
        objects, lines = stored(s3.client(), bucket)
    print_report(figures, args, counts, objects, lines)
    return 0


def print_report(
    figures: dict[str, Figures],
    args: argparse.Namespace,
    counts: dict[str, float],
    objects: int,
    lines: int,
) -> None:
    print(
        f"\nkiln-serve, 1 worker, iris logistic regression; {args.duration:g} s runs, median of "
        f"{args.rounds} rounds, loopback, {os.cpu_count()} cores"
    )
    print(f"{'load':16} {'config':12} {'req/s':>9} {'rows/s':>10} {'p50 ms':>7} {'p99 ms':>7}")
    for name, connections, rows, pause in LOADS:
        key = load_key(name, connections, pause)
        for config in CONFIGS:
            run = figures[config].median(key)
            print(
                f"{key:16} {config:12} {run.ok_per_second:>9,.0f} "
                f"{run.ok_per_second * rows:>10,.0f} {run.p50_ms:>7.2f} {run.p99_ms:>7.2f}"
            )
    print("\nRatios (same run)")
    for name, connections, _, pause in LOADS:
        key = load_key(name, connections, pause)
        base, plain = figures["baseline"].median(key), figures["plain"].median(key)
        for config in ("capture", "capture-file"):
            cap = figures[config].median(key)
            print(
                f"  {key:17} {config + '/baseline':21} p50 x{_ratio(cap.p50_ms, base.p50_ms)}"
                f"  p99 x{_ratio(cap.p99_ms, base.p99_ms)}"
                f"  req/s x{_ratio(cap.ok_per_second, base.ok_per_second)}"
            )
        print(f"  {key:17} {'baseline/plain':21} p99 x{_ratio(base.p99_ms, plain.p99_ms)}")
    spread = {
        config: round(
            statistics.pstdev([r.p99_ms for r in figures[config].runs[load_key("1-row", 4, 2)]]),
            3,
        )
        for config in CONFIGS
    }
    print(f"  (spread of the 1-row c4 +2ms p99 across rounds, ms: {json.dumps(spread)})")
    print(
        f"\nCapture: written {counts.get('written', 0):,.0f}, dropped "
        f"{counts.get('dropped', 0):,.0f}, failed {counts.get('failed', 0):,.0f}, still queued "
        f"{counts.get('queued', 0):,.0f}; the bucket holds {objects:,} objects with {lines:,} lines"
    )


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference else "n/a"


if __name__ == "__main__":
    sys.exit(main())
