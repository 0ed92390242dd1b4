"""Wire model of a version's signature: what `/predict` takes and answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.core.signature import Signature


class InputColumnOut(BaseModel):
    """One named input column."""

    name: str
    type: str = Field(description="MLflow's type: double, float, long, integer, boolean, string...")
    required: bool


class TensorOut(BaseModel):
    """A tensor input: rows of numbers."""

    dtype: str
    shape: list[int] = Field(description="-1: any number of rows.")


class SignaturePublic(BaseModel):
    """The version's signature. `/predict` checks requests against `inputs` (or `tensor`)
    before the model runs: integers are taken for double columns, plain rows need one
    value per column in this order, and a mismatch is 422 naming the row and column."""

    model: str
    version: int
    inputs: list[InputColumnOut] = Field(description="Named columns (empty for a tensor).")
    tensor: TensorOut | None = Field(description="The tensor input, when not columns.")
    outputs: list[dict[str, Any]] = Field(description="MLflow's output schema.")
    input_example: Any = Field(
        default=None, description="The example the version was logged with (records)."
    )

    @classmethod
    def of(cls, model: str, version: int, signature: Signature) -> SignaturePublic:
        """Wire form."""
        tensor = (
            TensorOut(dtype=signature.tensor_dtype, shape=list(signature.tensor_shape or ()))
            if signature.tensor_dtype is not None
            else None
        )
        return cls(
            model=model,
            version=version,
            inputs=[
                InputColumnOut(name=c.name, type=c.type, required=c.required)
                for c in signature.columns
            ],
            tensor=tensor,
            outputs=[dict(o) for o in signature.outputs],
            input_example=signature.input_example,
        )
