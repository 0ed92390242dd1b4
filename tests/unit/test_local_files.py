"""Atomic parquet writes under concurrent writers of the same file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from app.adapters.local_files import temporary_beside, write_parquet


def test_concurrent_writers_of_the_same_file_all_succeed(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": range(50_000)})
    target = tmp_path / "churn-2000-1.parquet"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: write_parquet(frame, target), range(16)))
    assert pd.read_parquet(target).equals(frame)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left


def test_temporary_names_differ_per_call(tmp_path: Path) -> None:
    target = tmp_path / "a.parquet"
    assert temporary_beside(target) != temporary_beside(target)
    assert temporary_beside(target).parent == tmp_path
