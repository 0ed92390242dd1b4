"""Writing local files that other processes may be reading or writing at the same time
(the feature store's own files, and the local storage)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


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
