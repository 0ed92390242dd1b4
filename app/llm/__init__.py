"""Kept for LLM versions logged before the redesign (see `app.llm.registry_model`)."""
