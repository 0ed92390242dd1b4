"""Work that runs beside requests in an ingress replica."""

from __future__ import annotations

from typing import Protocol


class Background(Protocol):
    """Work an ingress replica runs beside requests (started and stopped with the app)."""

    async def start(self) -> None:
        """Begin."""
        ...

    async def stop(self) -> None:
        """Finish (flush what is buffered)."""
        ...
