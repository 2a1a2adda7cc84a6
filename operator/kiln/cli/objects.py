"""Reading Kiln's objects and the object store for the read-only views (`trials`, `compare`).

`KilnObjects` wraps a CustomObjectsApi (or anything with its two read methods, as the unit
tests pass) and turns a missing object into a `CliError` that names it; `read_json` reads a
small JSON document (search.json) with the credentials of this shell, as `kiln baseline`
does.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kiln.api.wire import GROUP, VERSION
from kiln.cli.versions import CliError, _api, _namespace

TRAINING_JOBS = "trainingjobs"
MODEL_VERSIONS = "modelversions"
_KINDS = {TRAINING_JOBS: "trainingjob", MODEL_VERSIONS: "modelversion"}
# search.json of 1000 trials is well under a MiB; refuse anything absurd.
MAX_REPORT_BYTES = 16 << 20


class KilnObjects:
    """Kiln's custom objects in one namespace."""

    def __init__(self, custom: Any, namespace: str) -> None:
        self.custom = custom
        self.namespace = namespace

    def find(self, plural: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist (other failures are a CliError)."""
        try:
            return dict(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name
                )
            )
        except Exception as e:  # kubernetes.client.ApiException, without importing it here
            status = getattr(e, "status", None)
            if status == 404:
                return None
            if status is None:
                raise
            kind, reason = _KINDS.get(plural, plural), getattr(e, "reason", e)
            raise CliError(f"cannot read {kind} {self.namespace}/{name}: {reason}") from e

    def get(self, plural: str, name: str) -> dict[str, Any]:
        """The object, or a CliError naming what is missing."""
        found = self.find(plural, name)
        if found is None:
            raise CliError(f"{_KINDS.get(plural, plural)} {self.namespace}/{name} not found")
        return found

    def list(self, plural: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        answer = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, label_selector=label_selector
        )
        return list(answer.get("items", []))


def connect(args: argparse.Namespace) -> KilnObjects:
    """The namespace of `args` on the cluster of its kubeconfig."""
    from kubernetes import client

    return KilnObjects(client.CustomObjectsApi(_api(args)), _namespace(args))


def read_json(uri: str) -> Any:
    """A JSON document from the object store (s3://, file://), with this shell's credentials.

    Raises `StoreError` when it cannot be read and `ValueError` when it is not JSON.
    """
    from kiln.store import ObjectStore

    return json.loads(ObjectStore().read(uri, max_bytes=MAX_REPORT_BYTES).data)
