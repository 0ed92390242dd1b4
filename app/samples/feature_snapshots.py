"""The demo feature data: daily account snapshots per customer with event timestamps, and
churn labels at later timestamps, drawn from the same model as `app.samples.churn`."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from app.samples import churn

SNAPSHOT_FEATURES = churn.FEATURES


def customer_stats(customers: int, days: int, end: datetime, seed: int = 0) -> pd.DataFrame:
    """One row per customer per day over `days` days up to `end` (UTC, microseconds):
    tenure grows, charges and support calls wander; contract, fiber and age stay."""
    base = churn.generate(customers, seed)
    rng = np.random.default_rng(seed + 1)
    frames = []
    for day in range(days):
        at = end - timedelta(days=days - 1 - day)
        frame = base[["id", *SNAPSHOT_FEATURES]].rename(columns={"id": "customer_id"}).copy()
        frame["tenure_months"] = (frame["tenure_months"] + day / 30).round(3)
        frame["monthly_charges"] = (frame["monthly_charges"] + rng.normal(0, 1.0, customers)).round(
            2
        )
        frame["support_calls"] = (frame["support_calls"] + rng.binomial(1, 0.05, customers)).astype(
            "float64"
        )
        frame["event_timestamp"] = pd.Timestamp(at).tz_convert("UTC")
        frame["created"] = frame["event_timestamp"]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    for column in ("event_timestamp", "created"):
        out[column] = out[column].astype("datetime64[us, UTC]")
    return out


def labels(customers: int, end: datetime, seed: int = 0) -> pd.DataFrame:
    """Whether each customer churned, observed at a time in the last day before `end`."""
    base = churn.generate(customers, seed)
    rng = np.random.default_rng(seed + 2)
    hours = rng.uniform(0, 24, customers)
    when = pd.Timestamp(end).tz_convert("UTC") - pd.to_timedelta(hours, unit="h")
    return pd.DataFrame(
        {
            "customer_id": base["id"],
            "event_timestamp": pd.Series(when).astype("datetime64[us, UTC]"),
            "churned": base[churn.TARGET],
        }
    )
