"""A handle to a named, detached Ray actor, looked up once and again after it restarts.

The registry and traffic actors need each other (evidence one way, audit events the
other); each is created with the other's name and resolves it on first use.
"""

from __future__ import annotations

import threading
from typing import Any

import ray


class NamedActor:
    """The handle of the actor `name` in `namespace`, resolved lazily and cached."""

    def __init__(self, name: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self._handle: Any = None
        self._lock = threading.Lock()

    def handle(self) -> Any:
        """The actor's handle.

        Raises:
            ValueError: no actor has that name (yet).
        """
        with self._lock:
            if self._handle is None:
                self._handle = ray.get_actor(self.name, namespace=self.namespace)
            return self._handle

    def forget(self) -> None:
        """Drop the cached handle (after the actor was replaced)."""
        with self._lock:
            self._handle = None
