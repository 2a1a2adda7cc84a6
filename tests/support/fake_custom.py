"""A stand-in for kubernetes' CustomObjectsApi over a dict of objects (the CLI's reads)."""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiException


class FakeCustom:
    """The two reads of CustomObjectsApi the views use, over a dict of objects."""

    def __init__(self, objects_by_key: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects_by_key

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        try:
            return self.objects[(plural, name)]
        except KeyError:
            raise ApiException(status=404, reason="Not Found") from None

    def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, label_selector: str = ""
    ) -> dict[str, Any]:
        wanted = dict(p.split("=") for p in label_selector.split(",") if p)
        items = [
            o
            for (p, _), o in self.objects.items()
            if p == plural
            and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        return {"items": items}
