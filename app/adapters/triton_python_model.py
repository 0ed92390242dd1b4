"""The Triton Python-backend model that runs an exported TorchScript file.

Copied as `model.py` into each exported model's version directory and run by Triton's
Python backend in the Triton environment (not imported by the service). Triton's dynamic
batcher hands `execute` several requests at once: they go through the network as one
batch and are split back. Production Triton images use the native libtorch backend on
the same `model.pt` instead (`serving.triton.native_backend`).
"""

import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend


class TritonPythonModel:
    """Triton's Python-backend interface."""

    def initialize(self, args):  # type: ignore[no-untyped-def]
        torch.set_num_threads(1)
        if args.get("model_instance_kind") == "GPU":  # instance_kind KIND_GPU
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def execute(self, requests):  # type: ignore[no-untyped-def]
        inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT__0").as_numpy() for r in requests]
        sizes = [len(x) for x in inputs]
        with torch.no_grad():
            batch = torch.from_numpy(np.concatenate(inputs)).to(self.device)
            output = self.model(batch).cpu().numpy()
        responses, start = [], 0
        for size in sizes:
            part = np.ascontiguousarray(output[start : start + size], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT__0", part)]))
            start += size
        return responses
