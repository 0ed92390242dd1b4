"""Writing local files that other processes may be reading or writing at the same time
(the feature store's own files, and the local storage)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` (created if missing). The lock belongs to
    the open file, so threads of one process exclude each other too."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def temporary_beside(path: Path | str) -> Path:
    """A temporary name next to `path`, unique to this writer: two jobs (or two hosts
    sharing the storage) that write the same file at once never share a temporary file."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_parquet(frame: pd.DataFrame, path: Path | str) -> None:
    """Write `frame` to `path` atomically: readers see the old file or the whole new one,
    and concurrent writers of the same content both succeed (the last rename wins)."""
    tmp = temporary_beside(path)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
