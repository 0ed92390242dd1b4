"""Semantic versions on top of MLflow's integer model versions.

The rule, against the model's latest version:
- the first version is 1.0.0;
- a different input or output signature bumps MAJOR (callers must change);
- the same signature with a new artifact bumps MINOR (a retrained model);
- the same artifact again (same digest as any existing version) is refused as a
  duplicate, unless only its metadata (description, tags) changed: then PATCH.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.audit import canonical
from app.errors import Conflict, ErrorCode

_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True, order=True)
class SemVer:
    """MAJOR.MINOR.PATCH."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse `1.2.3`.

        Raises:
            ValueError: not a MAJOR.MINOR.PATCH string.
        """
        match = _PATTERN.match(text)
        if not match:
            raise ValueError(f"not a semantic version: {text!r}")
        return cls(*(int(part) for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


FIRST = SemVer(1, 0, 0)


@dataclass(frozen=True)
class ArtifactFacts:
    """What decides a version number: the signature, the artifact and its metadata."""

    signature_digest: str
    artifact_digest: str
    metadata_digest: str


@dataclass(frozen=True)
class Registered:
    """An existing version, as the rule sees it."""

    version: int
    semver: SemVer
    facts: ArtifactFacts


def next_semver(model: str, existing: Iterable[Registered], new: ArtifactFacts) -> SemVer:
    """The semantic version of `new` among the `existing` versions of `model`.

    Raises:
        Conflict: the same artifact with the same metadata is already registered
            (`duplicate_version`).
    """
    versions = sorted(existing, key=lambda r: r.semver)
    if not versions:
        return FIRST
    latest = versions[-1]
    same_artifact = [r for r in versions if r.facts.artifact_digest == new.artifact_digest]
    if same_artifact:
        duplicate = next(
            (r for r in same_artifact if r.facts.metadata_digest == new.metadata_digest), None
        )
        if duplicate is not None:
            raise Conflict(
                ErrorCode.DUPLICATE_VERSION,
                f"This artifact is already version {duplicate.version} ({duplicate.semver}) of "
                f"{model!r}, with the same metadata.",
                model=model,
                version=duplicate.version,
                semver=str(duplicate.semver),
            )
        return SemVer(latest.semver.major, latest.semver.minor, latest.semver.patch + 1)
    if new.signature_digest != latest.facts.signature_digest:
        return SemVer(latest.semver.major + 1, 0, 0)
    return SemVer(latest.semver.major, latest.semver.minor + 1, 0)


def signature_digest(signature: Mapping[str, Any] | None) -> str:
    """A digest of a model's input and output signature ("none" when it has none)."""
    if not signature:
        return hashlib.sha256(b"none").hexdigest()
    shape = {"inputs": signature.get("inputs"), "outputs": signature.get("outputs")}
    return hashlib.sha256(canonical(shape).encode("utf-8")).hexdigest()
