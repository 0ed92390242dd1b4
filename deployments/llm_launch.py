"""Start an LLM application from a Ray task that runs in the LLM environment.

Importable by both interpreters (it imports nothing at module level): the service sends
`launch` as a Ray task whose runtime environment is the LLM environment's Python, where
`deployments.llm_server` (and vLLM) import.
"""

from typing import Any


def launch(app_name: str, config: dict[str, Any]) -> str:
    """See `deployments.llm_server.launch`."""
    from deployments.llm_server import launch as start

    return start(app_name, config)
