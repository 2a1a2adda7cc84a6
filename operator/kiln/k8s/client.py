"""A thin async Kubernetes API client (aiohttp) for the operator's own reads and writes.

kopf watches the resources and hands events to the handlers; everything the handlers do to
the apiserver goes through this client: plain JSON in and out, no generated models, one
pooled HTTP session. Credentials come from the same places `kubectl` looks: in-cluster
service account, else `$KUBECONFIG` / `~/.kube/config` (loaded by the `kubernetes`
package's config loader, so exec plugins and tokens work as usual).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from kiln.api import wire

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the apiserver."""

    def __init__(self, status: int, reason: str, message: str, request: str = "") -> None:
        super().__init__(
            f"{request}: {status} {reason}: {message}"
            if request
            else f"{status} {reason}: {message}"
        )
        self.status = status
        self.reason = reason
        self.message = message
        # What was asked ("POST /api/v1/namespaces/prod/services"), so a failure names it.
        self.request = request

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: the object already exists, or a resourceVersion precondition failed."""
        return self.status == 409


@dataclass(frozen=True)
class Resource:
    """A resource type: where its objects live in the API."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


PODS = Resource("", "v1", "pods")
SECRETS = Resource("", "v1", "secrets")
EVENTS = Resource("", "v1", "events")
POD_DISRUPTION_BUDGETS = Resource("policy", "v1", "poddisruptionbudgets")
TRAINING_JOBS = Resource(wire.GROUP, wire.VERSION, wire.TRAINING_JOBS_PLURAL)
MODEL_VERSIONS = Resource(wire.GROUP, wire.VERSION, wire.MODEL_VERSIONS_PLURAL)
MODEL_DEPLOYMENTS = Resource(wire.GROUP, wire.VERSION, wire.MODEL_DEPLOYMENTS_PLURAL)
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")


@dataclass
class Credentials:
    server: str
    ssl_context: ssl.SSLContext | bool
    token: str | None = None
    token_file: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def authorization(self) -> str | None:
        if self.token_file is not None:
            # Projected service-account tokens rotate: read the current one every time.
            return "Bearer " + self.token_file.read_text().strip()
        return f"Bearer {self.token}" if self.token else None


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """In-cluster credentials when running in a pod, else the kubeconfig's current context."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    configuration = k8s_client.Configuration()
    in_cluster = kubeconfig is None and SERVICE_ACCOUNT_TOKEN.exists()
    if in_cluster:
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    context: ssl.SSLContext | bool
    if configuration.host.startswith("https://"):
        if not configuration.verify_ssl:
            context = False
        else:
            context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
            if configuration.cert_file and configuration.key_file:
                context.load_cert_chain(configuration.cert_file, configuration.key_file)
    else:
        context = False
    token = None
    auth = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    if auth:
        token = auth.removeprefix("Bearer ").strip()
    return Credentials(
        server=configuration.host.rstrip("/"),
        ssl_context=context,
        token=None if in_cluster else token,
        token_file=SERVICE_ACCOUNT_TOKEN if in_cluster else None,
    )


class KubeClient:
    """JSON over HTTP to the apiserver. Create it inside the event loop that uses it."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, kubeconfig: str | None = None) -> KubeClient:
        return cls(load_credentials(kubeconfig))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        text = await self.request_text(
            method, path, params=params, body=body, content_type=content_type
        )
        return json.loads(text) if text else {}

    async def request_text(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> str:
        """The answer's body as text; an answer of 400 or more is an `ApiError`."""
        headers = {"Accept": accept, **self.credentials.headers}
        authorization = self.credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        session = self._get_session()
        async with session.request(
            method, self.credentials.server + path, params=params, data=data, headers=headers
        ) as response:
            text = await response.text()
            if response.status >= 400:
                reason, message = response.reason or "", text
                try:
                    status = json.loads(text)
                    reason = status.get("reason", reason)
                    message = status.get("message", text)
                except ValueError:
                    pass
                raise ApiError(response.status, str(reason), str(message), f"{method} {path}")
            return text

    # --- verbs ---------------------------------------------------------------------------

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", resource.path(namespace, name))

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        labels: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        answer = await self.request("GET", resource.path(namespace), params=params)
        items = answer.get("items") or []
        # Filter again here: a fake apiserver may ignore the selector.
        return [
            item
            for item in items
            if all(
                (item.get("metadata", {}).get("labels") or {}).get(k) == v
                for k, v in (labels or {}).items()
            )
        ]

    async def logs(
        self,
        namespace: str | None,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
    ) -> str:
        """The tail of a pod's container log (`pods/log`), as text."""
        params: dict[str, str] = {}
        if container:
            params["container"] = container
        if tail_lines is not None:
            params["tailLines"] = str(tail_lines)
        return await self.request_text(
            # The apiserver refuses `Accept: text/plain` for a log (406); kubectl sends */*.
            "GET",
            PODS.path(namespace, pod, "log"),
            params=params,
            accept="*/*",
        )

    async def create(
        self, resource: Resource, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.request("POST", resource.path(namespace), body=body)

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        *,
        subresource: str = "",
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): maps merge, lists replace, null removes."""
        return await self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=body,
            content_type=MERGE_PATCH,
        )

    async def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> bool:
        """Delete (only the object with this uid, when given); False when already gone."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            await self.request("DELETE", resource.path(namespace, name), body=options)
        except ApiError as e:
            if e.not_found or e.conflict:
                return False
            raise
        return True


async def gather_limited(limit: int, *coroutines: Any) -> list[Any]:
    """Run coroutines with at most `limit` in flight, results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return list(await asyncio.gather(*(one(c) for c in coroutines)))
