"""The dataset-change trigger's probe: the dataset's ETag (or digest), read cheaply.

A HEAD request (S3 `HeadObject`, HTTP `HEAD`, `stat` for file://) is enough to notice a
new upload; the trainer still verifies and records the exact sha256 of what it reads.
S3 credentials come from the TrainingJob's `spec.output.credentialsSecretRef`, read at the
time of the poll and never stored. An unreachable store gives None: never a change.
"""

from __future__ import annotations

import asyncio
import logging

from kiln.api.training_job import TrainingJob
from kiln.k8s.client import ApiError, KubeClient
from kiln.services.s3_access import s3_environment
from kiln.store import ObjectStore, StoreError

logger = logging.getLogger(__name__)


class DatasetProbe:
    def __init__(self, client: KubeClient, default_endpoint: str | None) -> None:
        self.client = client
        self.default_endpoint = default_endpoint

    async def environment(self, job: TrainingJob) -> dict[str, str]:
        output = job.spec.output
        return await s3_environment(
            self.client,
            job.metadata.namespace or "default",
            output.s3_endpoint or self.default_endpoint,
            output.credentials_secret_ref,
        )

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
