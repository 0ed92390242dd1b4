"""One storage for every file the service and its jobs read or write outside MLflow's own
artifact API: datasets, checkpoints, batch-prediction inputs and outputs, the prediction
log, Triton model repositories and LLM model directories.

Files are addressed by a key (`datasets/churn-2000-0.parquet`) under one root URI: a
local directory on one machine, an S3-compatible bucket (MinIO) in production. A worker
node never depends on a file another node wrote to its own disk: it reads the storage.
Engines that speak filesystems themselves (Ray Data, Ray Train, pyarrow) get the same
location through `locate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class StoredFile:
    """A file in the storage."""

    key: str
    size: int
    modified: float  # epoch seconds


class Storage(Protocol):
    """Files by key under one root URI."""

    @property
    def root(self) -> str:
        """The root URI (`file:///...` or `s3://bucket/prefix`)."""
        ...

    def uri(self, key: str) -> str:
        """The full URI of a key, for people and logs."""
        ...

    def locate(self, location: str) -> tuple[Any, str]:
        """A pyarrow filesystem and the path in it, for engines (Ray Data's `filesystem=`,
        Ray Train's `storage_filesystem=`, pyarrow's readers): `location` is a key of this
        storage, a URI inside its root, or another URI or absolute local path."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a file (or a directory of files) is there."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """A file's content. Raises FileNotFoundError."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file: readers see the old file or the new one, never a part."""
        ...

    def files(self, prefix: str) -> list[StoredFile]:
        """Every file under `prefix` (recursively), by key."""
        ...

    def children(self, prefix: str) -> list[str]:
        """The names directly under `prefix` (files and directories), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove a file, or a directory with everything under it (absent: nothing)."""
        ...

    def digest(self, location: str) -> str:
        """SHA-256 (first 16 hex) over the files at `location` (as for `locate`): their
        names and contents, so equal data gives equal digests wherever it is stored."""
        ...

    def local_directory(self, prefix: str) -> Path:
        """A directory on this node that holds `prefix` for a server that needs local
        files (Triton's repository, vLLM's model directories): the storage's own directory
        when it is local, else a node-local cache."""
        ...
