"""One real service token per role."""

from __future__ import annotations

from typing import Any

import httpx

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


class RoleClient:
    """An HTTP client of the API that calls as one role or another."""

    def __init__(self, base_url: str, tokens: Tokens, timeout_s: float = 300) -> None:
        self.tokens = tokens
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def call(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> httpx.Response:
        """The answer to `method path` with `role`'s token."""
        return self.http.request(method, path, headers=self.tokens.header(role), **kw)

    def ok(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> Any:
        """The JSON of a successful answer (asserted below 300)."""
        response = self.call(method, path, role, **kw)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None
