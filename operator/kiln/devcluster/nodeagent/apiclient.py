"""A small asyncio Kubernetes API client: kubeconfig auth, JSON verbs, watch, retries."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger(__name__)
RETRYABLE = {429, 500, 502, 503, 504}


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str):
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def _material(entry: Mapping[str, Any], key: str, base: Path, scratch: Path) -> str | None:
    """A kubeconfig credential as a file path (`key-data` is written out)."""
    if entry.get(f"{key}-data"):
        path = scratch / key
        path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
        path.chmod(0o600)
        return str(path)
    if entry.get(key):
        return str((base / entry[key]).resolve())
    return None


class ApiClient:
    def __init__(self, server: str, ssl_context: ssl.SSLContext, token: str | None = None):
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiClient:
        config = yaml.safe_load(path.read_text())
        context_name = config.get("current-context") or config["contexts"][0]["name"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        scratch = Path(tempfile.mkdtemp(prefix="kiln-node-agent-"))
        base = path.parent
        context_ssl = ssl.create_default_context(
            cafile=_material(cluster, "certificate-authority", base, scratch)
        )
        cert = _material(user, "client-certificate", base, scratch)
        key = _material(user, "client-key", base, scratch)
        if cert:
            context_ssl.load_cert_chain(cert, key)
        for file in scratch.iterdir():
            file.unlink()  # loaded into memory; keep no key material in /tmp
        scratch.rmdir()
        return cls(cluster["server"], context_ssl, user.get("token"))

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context, limit=20),
                headers=self.headers,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        attempts: int = 5,
    ) -> Any:
        """JSON in, JSON out; retries connection errors and 429/5xx with back-off."""
        data = json.dumps(body) if body is not None else None
        delay = 0.2
        for attempt in range(attempts):
            try:
                async with self.session.request(
                    method,
                    self.server + path,
                    data=data,
                    params=params,
                    headers={"Content-Type": content_type} if data else None,
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as response:
                    text = await response.text()
                    if response.status < 300:
                        return json.loads(text) if text else None
                    if response.status not in RETRYABLE or attempt == attempts - 1:
                        raise ApiError(response.status, text, f"{method} {path}")
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt == attempts - 1:
                    raise ApiError(0, str(exc), f"{method} {path}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def get_or_none(self, path: str) -> Any:
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status in (403, 404):
                return None
            raise

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Events of one watch request; ends when the server closes the stream."""
        query = {**params, "watch": "1", "allowWatchBookmarks": "true"}
        async with self.session.get(
            self.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
        ) as response:
            if response.status >= 300:
                raise ApiError(response.status, await response.text(), f"WATCH {path}")
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
