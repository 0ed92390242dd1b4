"""The storage port's contract, on a local directory and on a real S3-compatible server
(moto's server, started here on loopback; boto3 makes the bucket, pyarrow does the rest).

Every file the service and its jobs keep outside MLflow goes through this port, so the
same tests run against both implementations, and Ray Data reads and writes the same
files through `locate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from app.adapters.prediction_log import PredictionLogReader
from app.adapters.storage import ArrowStorage, open_storage, parquet_bytes, read_parquet
from app.settings import StorageSettings
from testkit.s3 import moto_s3

pytestmark = pytest.mark.integration

KEY_ID, SECRET = "storage-test", "storage-test-secret"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on loopback, with the bucket."""
    with moto_s3("ml-service-files", key_id=KEY_ID, secret=SECRET) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArrowStorage:
    if request.param == "local":
        return open_storage(StorageSettings(uri=str(tmp_path / "files"), cache_dir=tmp_path))
    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = f"s3://ml-service-files/{tmp_path.name}"
    settings = StorageSettings(
        uri=prefix,
        endpoint_url=endpoint,
        access_key_id=SecretStr(KEY_ID),
        secret_access_key=SecretStr(SECRET),
        cache_dir=tmp_path / "cache",
    )
    return open_storage(settings)


def test_bytes_round_trip_and_missing_files(storage: ArrowStorage) -> None:
    storage.write_bytes("a/b/c.bin", b"\x00\x01payload")
    assert storage.read_bytes("a/b/c.bin") == b"\x00\x01payload"
    assert storage.exists("a/b/c.bin") and storage.exists("a/b") and not storage.exists("z")
    storage.write_bytes("a/b/c.bin", b"replaced")
    assert storage.read_bytes("a/b/c.bin") == b"replaced"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("a/missing.bin")
    assert storage.uri("a/b/c.bin") == f"{storage.root}/a/b/c.bin"


def test_listing_and_deleting(storage: ArrowStorage) -> None:
    for key in ("logs/model=m/version=1/1-a.parquet", "logs/model=m/version=2/2-b.parquet"):
        storage.write_bytes(key, b"x" * 7)
    storage.write_bytes("logs/model=n/version=1/3-c.parquet", b"y")
    assert storage.children("logs") == ["model=m", "model=n"]
    assert storage.children("logs/model=m") == ["version=1", "version=2"]
    assert storage.children("nothing/here") == []
    files = storage.files("logs/model=m")
    assert [(f.key, f.size) for f in files] == [
        ("logs/model=m/version=1/1-a.parquet", 7),
        ("logs/model=m/version=2/2-b.parquet", 7),
    ]
    assert all(f.modified > 0 for f in files)
    storage.delete("logs/model=m/version=1/1-a.parquet")
    storage.delete("logs/model=n")  # a directory, with everything under it
    storage.delete("never/written")  # absent: nothing to do
    assert [f.key for f in storage.files("logs")] == ["logs/model=m/version=2/2-b.parquet"]


def test_keys_cannot_leave_the_root(storage: ArrowStorage) -> None:
    for key in ("../outside", "a/../../b", "a/./b"):
        with pytest.raises(ValueError):
            storage.write_bytes(key, b"x")


def test_concurrent_writers_of_one_file_leave_one_whole_file(storage: ArrowStorage) -> None:
    frame = pd.DataFrame({"x": range(20_000)})
    data = parquet_bytes(frame)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: storage.write_bytes("datasets/d.parquet", data), range(16)))
    assert read_parquet(storage, "datasets/d.parquet").equals(frame)
    assert [f.key for f in storage.files("datasets")] == ["datasets/d.parquet"]


def test_equal_data_has_equal_digests_wherever_it_is(storage: ArrowStorage, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    storage.write_bytes("d1/part-0.parquet", parquet_bytes(frame))
    storage.write_bytes("d1/_SUCCESS", b"")  # not data: not in the digest
    storage.write_bytes("d2/part-0.parquet", parquet_bytes(frame))
    local = tmp_path / "elsewhere"
    local.mkdir()
    (local / "part-0.parquet").write_bytes(parquet_bytes(frame))
    digest = storage.digest("d1")
    assert digest == storage.digest("d2") == storage.digest(str(local))
    assert digest == storage.digest(storage.uri("d1"))  # by its URI too
    storage.write_bytes("d2/part-1.parquet", parquet_bytes(frame))
    assert storage.digest("d2") != digest
    assert storage.digest("no/such/data") != digest  # names the source instead


def test_engines_read_and_write_the_same_files(storage: ArrowStorage) -> None:
    import pyarrow.parquet as pq

    frame = pd.DataFrame({"x": [1, 2, 3]})
    storage.write_bytes("datasets/e.parquet", parquet_bytes(frame))
    filesystem, path = storage.locate("datasets/e.parquet")
    table = pq.read_table(path, filesystem=filesystem)
    assert table.to_pandas().equals(frame)
    filesystem, path = storage.locate(storage.uri("out/f.parquet"))  # by URI
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)  # as Ray Data's writers do
    pq.write_table(table, path, filesystem=filesystem)
    assert read_parquet(storage, "out/f.parquet").equals(frame)


def test_a_local_copy_for_servers_that_need_files(storage: ArrowStorage) -> None:
    storage.write_bytes("llm/tiny/1/config.json", b"{}")
    storage.write_bytes("llm/tiny/1/weights/model.safetensors", b"w" * 100)
    directory = storage.local_directory("llm/tiny/1")
    assert (directory / "config.json").read_bytes() == b"{}"
    assert (directory / "weights" / "model.safetensors").stat().st_size == 100
    assert storage.local_directory("llm/tiny/1") == directory  # again: the same place


def test_the_prediction_log_lists_models_and_versions(storage: ArrowStorage) -> None:
    frame = pd.DataFrame({"ts": [5.0], "request_id": ["r"], "variant": ["v1"]})
    for model, version in (("churn", 1), ("churn", 3), ("risk", 2)):
        key = f"predictions/model={model}/version={version}/1000-abc.parquet"
        storage.write_bytes(key, parquet_bytes(frame))
    log = PredictionLogReader(storage)
    assert log.models() == ["churn", "risk"]
    assert log.versions("churn") == [1, 3] and log.versions("nobody") == []
    assert len(log.window("churn", 3, since=0)) == 1
    assert log.prune(before=0.5) == 0
    assert log.prune(before=2.0) == 3
    assert storage.files("predictions") == []


def test_a_triton_export_is_published_for_replicas_on_other_nodes(
    storage: ArrowStorage, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from app.settings import TritonSettings
    from deployments.triton_server import TritonServer

    repository = storage.local_directory("triton/models")
    server = TritonServer(  # a remote Triton URL: no server process is started
        TritonSettings(url="http://127.0.0.1:9"),
        tracking_uri="sqlite://",
        repository=repository,
        log_level="WARNING",
        storage=storage,
    )
    (repository / "churn_v1" / "1").mkdir(parents=True)
    (repository / "churn_v1" / "config.pbtxt").write_text('name: "churn_v1"')
    (repository / "churn_v1" / "1" / "model.pt").write_bytes(b"\x00weights")
    server._publish("churn_v1")

    expected = {"triton/models/churn_v1/config.pbtxt", "triton/models/churn_v1/1/model.pt"}
    assert {f.key for f in storage.files("triton/models")} == expected
    if "://" in storage.root:  # another node's replica starts with the export
        settings = StorageSettings(
            uri=storage.root,
            endpoint_url=request.getfixturevalue("s3_endpoint"),
            access_key_id=SecretStr(KEY_ID),
            secret_access_key=SecretStr(SECRET),
            cache_dir=tmp_path / "other-node",
        )
        other = open_storage(settings).local_directory("triton/models")
        assert (other / "churn_v1" / "1" / "model.pt").read_bytes() == b"\x00weights"
