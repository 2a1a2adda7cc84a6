"""``s3://`` objects through boto3, configured from the standard AWS environment variables.

Endpoint: ``KILN_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL`` (SeaweedFS, MinIO, …; path-style
addressing is used whenever an endpoint is set). Region: ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` (default ``us-east-1``). Credentials: boto3's own chain, normally
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` injected from a Secret.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from kiln.store.errors import ObjectNotFound, StoreError, StoreUnavailable
from kiln.store.results import ObjectInfo, PutResult
from kiln.store.uri import ObjectUri

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})


def s3_endpoint(env: Mapping[str, str]) -> str | None:
    return env.get("KILN_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None


def make_s3_client(env: Mapping[str, str] | None = None) -> Any:
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = s3_endpoint(env)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint else {},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    # Keys from ``env`` are passed explicitly so that an ObjectStore built from a mapping
    # other than os.environ uses that mapping's credentials; absent keys fall back to
    # boto3's chain (IRSA, profiles, …).
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=config,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
    )


def _translate(uri: ObjectUri, exc: Exception) -> StoreError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound(f"{uri.raw}: {code}")
        return StoreUnavailable(f"{uri.raw}: {code} {error.get('Message', '')}".strip())
    return StoreUnavailable(f"{uri.raw}: {exc}")


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


@contextmanager
def open_s3(client: Any, uri: ObjectUri) -> Iterator[BinaryIO]:
    try:
        response = client.get_object(Bucket=uri.location, Key=uri.s3_key)
    except _boto_errors() as exc:
        raise _translate(uri, exc) from exc
    body = response["Body"]
    try:
        yield cast(BinaryIO, body)
    finally:
        body.close()


def put_s3(client: Any, uri: ObjectUri, data: bytes, content_type: str) -> PutResult:
    try:
        response = client.put_object(
            Bucket=uri.location, Key=uri.s3_key, Body=io.BytesIO(data), ContentType=content_type
        )
    except _boto_errors() as exc:
        raise _translate(uri, exc) from exc
    etag = response.get("ETag")
    return PutResult(uri.raw, hashlib.sha256(data).hexdigest(), len(data), etag)


def head_s3(client: Any, uri: ObjectUri) -> ObjectInfo:
    try:
        response = client.head_object(Bucket=uri.location, Key=uri.s3_key)
    except _boto_errors() as exc:
        raise _translate(uri, exc) from exc
    return ObjectInfo(uri.raw, response.get("ContentLength"), response.get("ETag"))
