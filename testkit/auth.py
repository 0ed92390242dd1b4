"""One real service token per role."""

from __future__ import annotations

from typing import Any

from app.core.access import Role, mint_token, token_digest


class Tokens:
    """One token per role."""

    def __init__(self) -> None:
        self.by_role = {role: mint_token() for role in Role}

    def header(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.by_role[role]}"}

    def entries(self) -> list[dict[str, Any]]:
        return [
            {"name": f"{role}-user", "roles": [role.value], "sha256": token_digest(token)}
            for role, token in self.by_role.items()
        ]
