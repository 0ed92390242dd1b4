"""The GPU variants of the backend tests: `serving.llm.device: gpu` (the CUDA vLLM from
`ML_LLM_DEVICE=gpu scripts/setup-llm`) and Triton model instances of kind KIND_GPU.
Configuration only, no code path of their own; skipped on machines without CUDA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import torch

from app.adapters.mlflow_llm import log_llm
from app.adapters.triton_export import ExportedModel, RepositoryOptions, config_pbtxt
from app.adapters.vllm_backend import engine_config
from app.core.access import Role
from app.samples.tiny_llm import build_tiny_llama
from app.settings import LlmSettings
from testkit.models import log_model_run
from tests.integration.ml_app import running_ml_app
from tests.integration.test_backends import (
    BASE,
    ROWS,
    Client,
    mlflow_predictions,
    needs_llm,
    needs_triton,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_gpu_configuration_asks_for_gpus() -> None:
    config = engine_config(LlmSettings(device="gpu"), "assistant", Path("/models/x"))
    assert config["accelerator_config"] == {"kind": "gpu"}
    assert config["placement_group_config"]["bundles"][0]["GPU"] == 1
    options = RepositoryOptions(instance_kind="KIND_GPU")
    assert "kind: KIND_GPU" in config_pbtxt(ExportedModel("m__v1", 4, None, (2,)), options)


@pytest.fixture(scope="module")
def client(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    env = {
        "ML_SERVING__LLM__DEVICE": "gpu",
        "ML_SERVING__TRITON__INSTANCE_KIND": "KIND_GPU",
        "ML_MONITORING__ENABLED": "false",
    }
    data = tmp_path_factory.mktemp("backends-gpu") / "data"
    with running_ml_app(data, env) as app, httpx.Client(base_url=app.url, timeout=60) as http:
        yield Client(app, http)


@needs_triton
def test_triton_on_gpu_answers_like_the_mlflow_model(client: Client) -> None:
    tracking_uri, artifact_root = client.tracking()
    run = log_model_run(tracking_uri, artifact_root, "gpu", seed=3)
    version = client.register("churn", run.run_id)
    client.deploy("churn", strategy="replace", version=version, backend="triton")
    answer = client.predict_when_routed("churn", ROWS, f"v{version}-triton")
    expected = mlflow_predictions(client, "churn", version, np.asarray(ROWS, dtype="float32"))
    # GPU kernels differ from the CPU's in the last bits: 1e-4 here (1e-5 on CPU)
    assert np.allclose(np.asarray(answer["predictions"]), expected, atol=1e-4, rtol=0)


@needs_llm
def test_llm_on_gpu_answers_a_chat(client: Client, tmp_path: Path) -> None:
    tracking_uri, _ = client.tracking()
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        log_llm(build_tiny_llama(tmp_path / "tiny"))
    version = client.register("assistant", run.info.run_id)
    deployed = client.http.post(
        f"{BASE}/models/assistant/deploy",
        json={"strategy": "replace", "version": version, "backend": "vllm"},
        headers=client.tokens.header(Role.ENGINEER),
        timeout=900,
    )
    assert deployed.status_code == 200, deployed.text
    chat = client.post(
        "/llm/v1/chat/completions",
        {"model": "assistant", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        Role.VIEWER,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["completion_tokens"] == 8
