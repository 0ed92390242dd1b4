"""Tabular training data through Ray Data: read (or generate), split, standardise, digest."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from app.adapters.storage import parquet_bytes
from app.jobs.spec import DatasetSpec
from app.samples import churn

if TYPE_CHECKING:
    from app.jobs.context import JobContext

log = logging.getLogger(__name__)


@dataclass
class TabularData:
    """The training and validation sets, and what lineage records about them."""

    train: Any  # ray.data.Dataset
    val: Any
    features: list[str]
    target: str
    mean: list[float]
    std: list[float]
    name: str
    source: str
    digest: str
    schema: dict[str, str]
    rows: int
    example: Any  # a few validation rows (DataFrame): named columns in, for the signature
    feature_service: str | None
    feature_signature: list[list[str]] | None = None  # the service's (feature, type) trained on


def load(spec: DatasetSpec, context: JobContext) -> TabularData:
    """Read the parquet data (writing a generated dataset first), split it and describe it."""
    served: list[str] | None = None
    signature: list[list[str]] | None = None
    if spec.feature_service:
        path, served, signature = _training_set(spec, context)
    else:
        path = _materialise(spec, context) if spec.generate else location(str(spec.path))
    filesystem, inside = context.storage.locate(path)
    dataset = ray.data.read_parquet(inside, filesystem=filesystem)
    schema = {
        name: str(kind)
        for name, kind in zip(dataset.schema().names, dataset.schema().types, strict=True)
    }
    if spec.target not in schema:
        raise ValueError(f"the dataset has no target column {spec.target!r}")
    features = spec.features or served or [c for c in schema if c not in (spec.target, "id")]
    missing = [f for f in features if f not in schema]
    if missing:
        raise ValueError(f"the dataset has no column(s) {missing}")
    dataset = dataset.select_columns([*features, spec.target])
    seed = spec.generate.seed if spec.generate else 0
    train, val = dataset.train_test_split(
        test_size=spec.validation_fraction, shuffle=True, seed=seed
    )
    train, val = train.materialize(), val.materialize()
    mean = [float(train.mean(f)) for f in features]
    std = [float(train.std(f) or 1.0) for f in features]
    example = val.limit(5).to_pandas()[features].astype("float64")
    rows = dataset.count()
    log.info("dataset %s: %d rows, %d features, target %s", path, rows, len(features), spec.target)
    return TabularData(
        train=train,
        val=val,
        features=features,
        target=spec.target,
        mean=mean,
        std=std,
        name=posixpath.splitext(posixpath.basename(path.rstrip("/")))[0],
        source=path,
        digest=context.storage.digest(path),
        schema=schema,
        rows=rows,
        example=example,
        feature_service=spec.feature_service,
        feature_signature=signature,
    )


def location(path: str) -> str:
    """A dataset location a job can read on any node: a URI as given, a local path made
    absolute (relative paths are taken from the job's working directory)."""
    return path if "://" in path else os.path.abspath(path)


def _materialise(spec: DatasetSpec, context: JobContext) -> str:
    """Write the generated sample dataset as parquet, content-addressed in the storage's
    `datasets/` (the same seed and size give the same file)."""
    assert spec.generate is not None
    key = f"datasets/churn-{spec.generate.rows}-{spec.generate.seed}.parquet"
    if not context.storage.exists(key):  # two jobs starting together may both write it
        frame = churn.generate(spec.generate.rows, spec.generate.seed)
        context.storage.write_bytes(key, parquet_bytes(frame))
    return context.storage.uri(key)


def _training_set(spec: DatasetSpec, context: JobContext) -> tuple[str, list[str], list[list[str]]]:
    """Point-in-time-correct features for the entity rows, from the feature service,
    written as parquet (content-addressed) so that the digest covers what was trained on."""
    import pyarrow.parquet as pq

    assert spec.feature_service and spec.entities
    from app.core.features import service_signature

    filesystem, inside = context.storage.locate(location(spec.entities))
    entity_df = pq.read_table(inside, filesystem=filesystem).to_pandas()
    store = context.feature_store()
    signature = service_signature(store.catalog(), spec.feature_service)
    if signature is None:
        raise ValueError(f"no feature service {spec.feature_service!r}")
    frame = store.historical(entity_df, spec.feature_service)
    served = [c for c in frame.columns if c not in entity_df.columns]
    complete = frame.dropna(subset=served)
    if len(complete) < len(frame):
        log.warning(
            "%d of %d entity rows have no feature value at their timestamp (older than the "
            "TTL, or none yet): left out of training",
            len(frame) - len(complete),
            len(frame),
        )
    if len(complete) < 10:
        raise ValueError(
            f"the feature service {spec.feature_service!r} has values for only "
            f"{len(complete)} of {len(frame)} entity rows at their timestamps: no "
            "snapshot within the TTL before these labels' timestamps?"
        )
    data = parquet_bytes(complete.drop(columns=["event_timestamp"]))
    content = hashlib.sha256(data).hexdigest()[:16]
    key = f"datasets/{spec.feature_service}-{content}.parquet"
    context.storage.write_bytes(key, data)
    log.info(
        "training set from feature service %s: %d rows (of %d entity rows)",
        spec.feature_service,
        len(complete),
        len(entity_df),
    )
    return context.storage.uri(key), served, [list(s) for s in signature]


def schema_json(data: TabularData) -> str:
    """The dataset's schema as MLflow stores it."""
    return json.dumps({"columns": data.schema, "features": data.features, "target": data.target})
