"""LLM versions in the registry: an MLflow pyfunc model that carries a local model
directory (Hugging Face layout: config.json, safetensors, tokenizer) as its artifact.

Registered, validated and promoted like any other version: the registry's validation
loads it and generates from its input example with transformers (greedy, a few tokens).
The `vllm` backend serves the same directory with vLLM. Nothing is downloaded from a hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd

ARTIFACT = "model"
PIP = ["torch==2.13.0", "transformers>=5.16,<5.20", "pandas"]


class LocalLLM(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Greedy generation with transformers: `prompt` column in, `completion` out."""

    def load_context(self, context: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = context.artifacts[ARTIFACT]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        import torch

        del context

        max_tokens = int((params or {}).get("max_tokens", 8))
        completions = []
        for prompt in model_input["prompt"].astype(str):
            encoded = self.tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                output = self.model.generate(
                    **encoded,
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.eos_token_id,
                )
            new = output[0][encoded["input_ids"].shape[1] :]
            completions.append(self.tokenizer.decode(new, skip_special_tokens=True))
        return pd.DataFrame({"completion": completions})


def log_llm(model_dir: Path | str, *, name: str = "model") -> Any:
    """Log `model_dir` as the active run's model (an LLM version's source)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "prompt")]),
        outputs=Schema([ColSpec("string", "completion")]),
        params=ParamSchema([ParamSpec("max_tokens", "long", 8)]),
    )
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=LocalLLM(),
        artifacts={ARTIFACT: str(model_dir)},
        signature=signature,
        input_example=pd.DataFrame({"prompt": ["Hello"]}),
        pip_requirements=PIP,
    )
