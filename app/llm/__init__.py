"""Large language models: local model directories, the registry flavor, the vLLM backend."""
