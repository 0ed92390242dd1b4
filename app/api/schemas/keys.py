"""Annotated key types for params, metrics and tags, with MLflow's naming rules."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from app.core.tracking import RESERVED_TAG_PREFIX, USER_TAG, key_problem


def _valid_key(key: str) -> str:
    problem = key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


def _user_tag_key(key: str) -> str:
    _valid_key(key)
    if key.startswith(RESERVED_TAG_PREFIX) or key == USER_TAG:
        raise ValueError(f"is reserved for the service ({RESERVED_TAG_PREFIX}*, {USER_TAG})")
    return key


EntityKey = Annotated[
    str,
    AfterValidator(_valid_key),
    Field(description="Letters, digits, `_ - . : /` and spaces; at most 250 characters."),
]
TagKey = Annotated[
    str,
    AfterValidator(_user_tag_key),
    Field(description="As a param key; `mlservice.*` and `mlflow.user` are reserved."),
]
