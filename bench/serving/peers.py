"""The peer servers of the serving benchmark: how each is installed, configured and started.

Each peer lives in its own virtualenv under ~/.cache/kiln/bench/ (their pins conflict
with Kiln's), trains the same iris logistic regression itself (so no pickle crosses
scikit-learn versions), and is started on loopback with its leanest reasonable
settings: request logging off, one process unless a worker count is asked for.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "kiln" / "bench"
PYTHON = "python3.11"

# uvloop 0.22 broke MLServer 1.7.1's parallel workers (get_event_loop in a fresh process);
# pin the uvloop it was released with so its worker pool runs at all.
MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0")
KSERVE_PACKAGES = ("kserve==0.21.0", "scikit-learn", "joblib")

TRAIN_SCRIPT = """
import sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), sys.argv[1])
"""

KSERVE_SERVER = """
import sys, joblib, kserve
from kserve.utils.utils import get_predict_input, get_predict_response

class SKLearnModel(kserve.Model):  # what KServe's sklearnserver does, minus the storage code
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self):
        self._model = joblib.load(self.path)
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)

if __name__ == "__main__":  # workers > 1 spawn processes that re-import this file
    port, workers = int(sys.argv[2]), int(sys.argv[3])
    server = kserve.ModelServer(http_port=port, grpc_port=port + 1, workers=workers,
                                enable_grpc=False, enable_latency_logging=False)
    server.start([SKLearnModel("iris", sys.argv[1])])
"""


@dataclass(frozen=True)
class ServerSpec:
    label: str
    command: list[str]
    workdir: Path
    port: int


def ensure_venv(name: str, packages: tuple[str, ...]) -> Path:
    """Create (once) ~/.cache/kiln/bench/<name> with exactly `packages` installed."""
    venv = CACHE / name
    marker = venv / ".kiln-bench-installed"
    wanted = "\n".join(packages)
    if marker.exists() and marker.read_text() == wanted:
        return venv
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    print(f"==> installing {' '.join(packages)} into {venv}", file=sys.stderr)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *packages],
        check=True,
    )
    marker.write_text(wanted)
    return venv


def _train_joblib(venv: Path, target: Path) -> None:
    if not target.exists():
        subprocess.run([str(venv / "bin" / "python"), "-c", TRAIN_SCRIPT, str(target)], check=True)


def kiln_spec(work: Path, port: int, workers: int) -> ServerSpec:
    model = work / "kiln" / "model.skops"
    model.parent.mkdir(parents=True, exist_ok=True)
    if not model.exists():
        import skops.io as sio
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        features, target = load_iris(return_X_y=True)
        model.write_bytes(sio.dumps(LogisticRegression(max_iter=1000).fit(features, target)))
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    kiln_serve = Path(sys.executable).parent / "kiln-serve"
    command = [
        str(kiln_serve),
        "--model-name=iris",
        "--model-version=1",
        f"--artifact-uri={model}",
        f"--artifact-sha256={digest}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--log-level=WARNING",
    ]
    return ServerSpec(f"kiln-serve w{workers}", command, model.parent, port)


def mlserver_spec(work: Path, port: int, parallel_workers: int) -> ServerSpec:
    venv = ensure_venv("mlserver", MLSERVER_PACKAGES)
    root = work / f"mlserver-pw{parallel_workers}"
    model_dir = root / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    _train_joblib(venv, model_dir / "model.joblib")
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": port + 1,
        "metrics_port": port + 2,
        "parallel_workers": parallel_workers,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    command = [str(venv / "bin" / "mlserver"), "start", str(root)]
    label = "mlserver 1 process" if parallel_workers == 0 else f"mlserver pw{parallel_workers}"
    return ServerSpec(label, command, root, port)


def kserve_spec(work: Path, port: int, workers: int) -> ServerSpec:
    venv = ensure_venv("kserve", KSERVE_PACKAGES)
    root = work / "kserve"
    root.mkdir(parents=True, exist_ok=True)
    _train_joblib(venv, root / "model.joblib")
    script = root / "server.py"
    script.write_text(textwrap.dedent(KSERVE_SERVER))
    command = [
        str(venv / "bin" / "python"),
        str(script),
        str(root / "model.joblib"),
        str(port),
        str(workers),
    ]
    return ServerSpec(f"kserve w{workers}", command, root, port)
