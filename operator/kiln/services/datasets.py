"""The dataset-change trigger's probe: the dataset's ETag (or digest), read cheaply.

A HEAD request (S3 `HeadObject`, HTTP `HEAD`, `stat` for file://) is enough to notice a
new upload; the trainer still verifies and records the exact sha256 of what it reads.
S3 credentials come from the TrainingJob's `spec.output.credentialsSecretRef`, read at the
time of the poll and never stored. An unreachable store gives None: never a change.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from kiln.api.training_job import TrainingJob
from kiln.k8s.client import SECRETS, ApiError, KubeClient
from kiln.store import ObjectStore, StoreError

logger = logging.getLogger(__name__)


class DatasetProbe:
    def __init__(self, client: KubeClient, default_endpoint: str | None) -> None:
        self.client = client
        self.default_endpoint = default_endpoint

    async def environment(self, job: TrainingJob) -> dict[str, str]:
        output = job.spec.output
        env = {"AWS_EC2_METADATA_DISABLED": "true"}
        endpoint = output.s3_endpoint or self.default_endpoint
        if endpoint:
            env["AWS_ENDPOINT_URL"] = endpoint
        ref = output.credentials_secret_ref
        if ref is not None:
            secret = await self.client.get(SECRETS, job.metadata.namespace, ref.name)
            data = secret.get("data") or {}
            for variable, key in (
                ("AWS_ACCESS_KEY_ID", ref.access_key_id_key),
                ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key),
            ):
                if key in data:
                    env[variable] = base64.b64decode(data[key]).decode()
        return env

    async def digest(self, job: TrainingJob) -> str | None:
        """`sha256:<hex>` when pinned, else the store's ETag; None when unknown."""
        dataset = job.spec.dataset
        if dataset.sha256:
            return f"sha256:{dataset.sha256}"
        try:
            env = await self.environment(job)
            info = await asyncio.to_thread(ObjectStore(env=env).head, dataset.uri)
        except (ApiError, StoreError, OSError) as e:
            logger.warning("dataset %s not probed: %s", dataset.uri, e)
            return None
        if info.etag:
            return f"etag:{info.etag}"
        return None
