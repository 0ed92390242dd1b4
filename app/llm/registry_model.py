"""Where LLM versions logged before the redesign find their model class.

MLflow pickles a pyfunc model's class by reference to its module: versions registered
before the class moved to `app.adapters.mlflow_llm` name this module. Kept so that they
still load; new versions name the new module.
"""

from app.adapters.mlflow_llm import LocalLLM

__all__ = ["LocalLLM"]
