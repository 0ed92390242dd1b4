"""`Storage` over pyarrow's filesystems: a local directory, or an S3-compatible bucket
(MinIO, S3), chosen by the root URI.

pyarrow's filesystem layer is what Ray Data and Ray Train read and write through, so the
location `locate` gives an engine is the same file this class reads: one storage for the
service, its jobs and their engines. Writes are atomic: a local file is written under a
temporary name and renamed; an S3 object appears only once its upload completes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import posixpath
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlparse

from pyarrow import fs as pafs

from app.errors import ErrorCode, Unavailable
from app.ports.storage import StoredFile
from app.settings import StorageSettings

P = ParamSpec("P")
R = TypeVar("R")
# How pyarrow's S3 client says the server could not be reached (AWS SDK error kinds).
_OUTAGE_MARKS = ("NETWORK_CONNECTION", "curlCode", "REQUEST_TIMEOUT", "SERVICE_UNAVAILABLE")


def _outage_as_unavailable(method: Callable[P, R]) -> Callable[P, R]:
    """An object store that cannot be reached is 503 `object_store_unavailable` (a
    missing file stays FileNotFoundError): callers tell an outage from a bad key."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or not any(
                mark in str(exc) for mark in _OUTAGE_MARKS
            ):
                raise
            raise Unavailable(
                ErrorCode.OBJECT_STORE_UNAVAILABLE,
                "The object store (S3) is unavailable; retry shortly.",
            ) from exc

    return call


if TYPE_CHECKING:
    import pandas as pd


def open_storage(settings: StorageSettings) -> ArrowStorage:
    """The storage of these (resolved) settings: `s3://bucket/prefix` or a directory."""
    uri = settings.uri
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ValueError(f"storage.uri {uri!r}: no bucket")
        base = posixpath.join(parsed.netloc, parsed.path.strip("/")).rstrip("/")
        return ArrowStorage(_s3(settings), base, f"s3://{base}", settings.cache_dir, local=False)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"storage.uri {uri!r}: use a directory, file://... or s3://...")
    directory = Path(uri.removeprefix("file://")).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return ArrowStorage(pafs.LocalFileSystem(), str(directory), str(directory), directory, True)


def _s3(settings: StorageSettings) -> pafs.S3FileSystem:
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"region": settings.region or "us-east-1"}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        options["endpoint_override"] = parsed.netloc
        options["scheme"] = parsed.scheme or "http"
    if settings.access_key_id and settings.secret_access_key:
        options["access_key"] = settings.access_key_id.get_secret_value()
        options["secret_key"] = settings.secret_access_key.get_secret_value()
    return pafs.S3FileSystem(**options)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as one parquet file's bytes (to `write_bytes`)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_parquet(storage: ArrowStorage, key: str) -> pd.DataFrame:
    """A parquet file of the storage as a frame."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(storage.read_bytes(key)))


class ArrowStorage:
    """See `Storage`. Build it with `open_storage`.

    Args:
        filesystem: the pyarrow filesystem.
        base: the root's path in it (`bucket/prefix`, or a local directory).
        root: the root as a URI-like string (what `root` reports).
        cache_dir: where node-local copies go (`local_directory`, S3 only).
        local: whether `filesystem` is this node's disk.
    """

    def __init__(
        self, filesystem: pafs.FileSystem, base: str, root: str, cache_dir: Path, local: bool
    ) -> None:
        self._fs = filesystem
        self._base = base.rstrip("/") or "/"
        self._root = root.rstrip("/")
        self._cache = cache_dir
        self._local = local

    @property
    def root(self) -> str:
        """See `Storage.root`."""
        return self._root

    def uri(self, key: str) -> str:
        """See `Storage.uri`."""
        return f"{self._root}/{_checked(key)}" if key else self._root

    def locate(self, location: str) -> tuple[pafs.FileSystem, str]:
        """See `Storage.locate`."""
        if location.startswith(self._root + "/") or location == self._root:
            return self._fs, self._path(location[len(self._root) + 1 :])
        if location.startswith("file://"):
            return pafs.LocalFileSystem(), location.removeprefix("file://")
        if location.startswith("s3://") and not self._local:
            return self._fs, location.removeprefix("s3://").rstrip("/")
        if "://" in location:
            filesystem, path = pafs.FileSystem.from_uri(location)
            return filesystem, path
        if location.startswith("/"):
            return pafs.LocalFileSystem(), location
        return self._fs, self._path(location)

    @_outage_as_unavailable
    def exists(self, key: str) -> bool:
        """See `Storage.exists`."""
        return bool(self._fs.get_file_info(self._path(key)).type != pafs.FileType.NotFound)

    @_outage_as_unavailable
    def read_bytes(self, key: str) -> bytes:
        """See `Storage.read_bytes`."""
        path = self._path(key)
        if self._fs.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(self.uri(key))
        with self._fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    @_outage_as_unavailable
    def write_bytes(self, key: str, data: bytes) -> None:
        """See `Storage.write_bytes`."""
        path = self._path(key)
        if not self._local:  # an S3 object appears whole, once uploaded
            with self._fs.open_output_stream(path) as stream:
                stream.write(data)
            return
        self._fs.create_dir(posixpath.dirname(path), recursive=True)
        temporary = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self._fs.open_output_stream(temporary) as stream:
                stream.write(data)
            self._fs.move(temporary, path)
        finally:
            if self._fs.get_file_info(temporary).type != pafs.FileType.NotFound:
                self._fs.delete_file(temporary)

    @_outage_as_unavailable
    def files(self, prefix: str) -> list[StoredFile]:
        """See `Storage.files`."""
        selector = pafs.FileSelector(self._path(prefix), recursive=True, allow_not_found=True)
        found = [
            StoredFile(self._key(info.path), int(info.size or 0), _epoch(info.mtime))
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.endswith(".tmp")
        ]
        return sorted(found, key=lambda f: f.key)

    @_outage_as_unavailable
    def children(self, prefix: str) -> list[str]:
        """See `Storage.children`."""
        selector = pafs.FileSelector(self._path(prefix), recursive=False, allow_not_found=True)
        return sorted(info.base_name for info in self._fs.get_file_info(selector))

    @_outage_as_unavailable
    def delete(self, key: str) -> None:
        """See `Storage.delete`."""
        path = self._path(key)
        kind = self._fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            self._fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            self._fs.delete_file(path)

    @_outage_as_unavailable
    def digest(self, location: str) -> str:
        """See `Storage.digest` (a directory: its parquet files, as a dataset is read)."""
        filesystem, path = self.locate(location)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return hashlib.sha256(location.encode()).hexdigest()[:16]  # name the source
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(path, recursive=True)
            entries = sorted(
                (i for i in filesystem.get_file_info(selector) if i.base_name.endswith(".parquet")),
                key=lambda i: i.path,
            )
        else:
            entries = [info]
        digest = hashlib.sha256()
        for entry in entries:
            digest.update(entry.base_name.encode())
            with filesystem.open_input_stream(entry.path) as stream:
                while block := stream.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()[:16]

    @_outage_as_unavailable
    def local_directory(self, prefix: str) -> Path:
        """See `Storage.local_directory`: with an S3 root, the files under `prefix` are
        copied into the node-local cache (those already there with the same size stay)."""
        if self._local:
            directory = Path(self._path(prefix))
            directory.mkdir(parents=True, exist_ok=True)
            return directory
        directory = self._cache / _checked(prefix)
        directory.mkdir(parents=True, exist_ok=True)
        for stored in self.files(prefix):
            target = self._cache / stored.key
            if target.exists() and target.stat().st_size == stored.size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            partial.write_bytes(self.read_bytes(stored.key))
            partial.replace(target)
        return directory

    def _path(self, key: str) -> str:
        key = _checked(key)
        return f"{self._base}/{key}" if key else self._base

    def _key(self, path: str) -> str:
        return path[len(self._base) :].lstrip("/")


def _checked(key: str) -> str:
    """A key relative to the root: no absolute paths, no `..`."""
    key = key.strip("/")
    if any(part in ("..", ".") for part in key.split("/")):
        raise ValueError(f"storage key {key!r}: no . or .. parts")
    return key


def _epoch(moment: Any) -> float:
    return float(moment.timestamp()) if moment is not None else 0.0
