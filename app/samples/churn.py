"""A synthetic customer-churn dataset: tabular features, a binary label, a known signal.

Used by the sample training configs and the tests, so that a new user trains something
real in minutes and a test can state what "better than a constant baseline" means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = (
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "contract_months",
    "fiber",
    "age",
)
TARGET = "churned"


def generate(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` customers with an `id`, six features and whether they churned.

    Churn is likelier for short tenure, high charges, many support calls, monthly
    contracts and fiber; age has no effect (a distractor).
    """
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, rows).astype("float64")
    charges = rng.normal(70, 25, rows).clip(15, 150)
    calls = rng.poisson(1.5, rows).astype("float64")
    contract = rng.choice([1.0, 12.0, 24.0], rows, p=[0.5, 0.3, 0.2])
    fiber = rng.binomial(1, 0.4, rows).astype("float64")
    age = rng.integers(18, 80, rows).astype("float64")
    logit = (
        -0.04 * tenure + 0.03 * (charges - 70) + 0.45 * calls - 0.08 * contract + 0.8 * fiber + 0.3
    )
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "contract_months": contract,
            "fiber": fiber,
            "age": age,
            TARGET: churned.astype("int64"),
        }
    )
