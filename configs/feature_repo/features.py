"""The demo churn feature repository: one entity, a feature view with a TTL over customer
snapshots, an on-demand transformation and two feature services.

Data (written by `app.samples.feature_snapshots` on the service's first start) lives in the
file storage's `feast/`; the service points ML_FEAST_DIR at a local directory holding it
(the storage's own, or a node-local copy of an S3 one): `customer_stats.parquet` holds a
daily snapshot per customer with its `event_timestamp`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feast.value_type import ValueType

DATA = os.environ.get("ML_FEAST_DIR", "data/feast")

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A subscriber of the service.",
)

customer_stats_source = FileSource(
    name="customer_stats_source",
    path=os.path.join(DATA, "customer_stats.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

customer_stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(days=2),
    schema=[
        Field(name="tenure_months", dtype=Float64),
        Field(name="monthly_charges", dtype=Float64),
        Field(name="support_calls", dtype=Float64),
        Field(name="contract_months", dtype=Float64),
        Field(name="fiber", dtype=Float64),
        Field(name="age", dtype=Float64),
    ],
    source=customer_stats_source,
    online=True,
    description="Daily snapshot of each customer's account.",
    tags={"team": "retention"},
)

discount = RequestSource(name="discount", schema=[Field(name="discount", dtype=Float64)])


@on_demand_feature_view(
    sources=[customer_stats, discount],
    schema=[
        Field(name="charges_per_tenure_month", dtype=Float64),
        Field(name="net_charges", dtype=Float64),
    ],
    mode="pandas",
    description="Charges relative to tenure, and after the discount sent with the request.",
)
def customer_ratios(features: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["charges_per_tenure_month"] = features["monthly_charges"] / features["tenure_months"]
    out["net_charges"] = features["monthly_charges"] - features["discount"]
    return out


churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_stats],
    description="The six account features the churn models train on.",
)

churn_v2 = FeatureService(
    name="churn_v2",
    features=[customer_stats[["tenure_months", "monthly_charges"]], customer_ratios],
    description="Charges features with the on-demand ratios (needs `discount`).",
)

OBJECTS = [customer, customer_stats_source, customer_stats, customer_ratios, churn_v1, churn_v2]
