"""A real S3-compatible server for tests: moto's, in memory, on a loopback port below
32768, with its buckets made by boto3 (the production stack's server is s3rver, see
scripts/stack; this one starts in under a second)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from testkit.service import free_port


@contextmanager
def moto_s3(*buckets: str, key_id: str, secret: str) -> Iterator[str]:
    """Yield the endpoint URL of a fresh server holding `buckets`."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    try:
        yield endpoint
    finally:
        server.stop()
