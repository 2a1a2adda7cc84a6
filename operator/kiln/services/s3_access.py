"""The S3 environment a workload's store access resolves to (endpoint + Secret keys).

A TrainingJob's `spec.output` and a ModelDeployment's `spec.artifactStore` both name an
endpoint and a credentials Secret; the operator reads with what the pods get, resolved
at the moment of use and never stored.
"""

from __future__ import annotations

import base64

from kiln.api.training_job import S3CredentialsReference
from kiln.k8s.client import SECRETS, KubeClient


async def s3_environment(
    client: KubeClient,
    namespace: str,
    endpoint: str | None,
    credentials: S3CredentialsReference | None,
) -> dict[str, str]:
    """AWS_* variables for kiln.store: the endpoint, and the Secret's keys when named."""
    env = {"AWS_EC2_METADATA_DISABLED": "true"}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    if credentials is not None:
        secret = await client.get(SECRETS, namespace, credentials.name)
        data = secret.get("data") or {}
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key_key),
        ):
            if key in data:
                env[variable] = base64.b64decode(data[key]).decode()
    return env
