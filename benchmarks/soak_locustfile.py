"""The soak's load, for Locust (run by `benchmarks/soak.py`, never alone): each user sends
a fixed rate of requests on loopback: predict on the A/B test (sticky keys), feedback on
one prediction in four, and a feature lookup in every fifth task.

Its settings come from the environment `soak.py` sets: SOAK_TOKEN (a viewer's), and
SOAK_ENGINEER_TOKEN (feedback needs an engineer), SOAK_MODEL, SOAK_RATE (requests per
second per user).
"""

import itertools
import os
import random

from locust import HttpUser, constant_throughput, task

BASE = "/api/v1/ml"
_KEYS = itertools.count()


class SoakUser(HttpUser):
    wait_time = constant_throughput(float(os.environ.get("SOAK_RATE", "2")))

    def on_start(self) -> None:
        self.viewer = {"Authorization": f"Bearer {os.environ['SOAK_TOKEN']}"}
        self.engineer = {"Authorization": f"Bearer {os.environ['SOAK_ENGINEER_TOKEN']}"}
        self.model = os.environ.get("SOAK_MODEL", "soak")
        self.random = random.Random(next(_KEYS))

    @task(4)
    def predict_and_feedback(self) -> None:
        row = [round(self.random.random(), 3) for _ in range(4)]
        key = f"customer-{self.random.randrange(5000)}"
        body = {"model": self.model, "inputs": [row], "request_key": key}
        with self.client.post(
            f"{BASE}/predict", json=body, headers=self.viewer, name="predict", catch_response=True
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
            request_id = answer.json()["request_id"]
        if self.random.random() < 0.25:
            self.client.post(
                f"{BASE}/feedback",
                json={"request_id": request_id, "outcome": float(self.random.random() < 0.5)},
                headers=self.engineer,
                name="feedback",
            )

    @task(1)
    def features(self) -> None:
        entities = [{"customer_id": self.random.randrange(100)} for _ in range(3)]
        self.client.post(
            f"{BASE}/features/serve",
            json={"feature_service": "churn_v1", "entities": entities},
            headers=self.viewer,
            name="features",
        )
