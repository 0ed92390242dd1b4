"""The feature catalog and online lookups as values: freshness, feature references,
per-value statuses. No Feast imports (the adapter maps Feast's objects to these)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Freshness(StrEnum):
    """How current a feature view's online values are."""

    NEVER_MATERIALIZED = "never_materialized"
    FRESH = "fresh"
    STALE = "stale"


def freshness(last_end: datetime | None, ttl: timedelta | None, now: datetime) -> Freshness:
    """Fresh while the newest materialized data is younger than the view's TTL (a view
    without a TTL stays fresh once materialized)."""
    if last_end is None:
        return Freshness.NEVER_MATERIALIZED
    if ttl is None or ttl <= timedelta(0):
        return Freshness.FRESH
    return Freshness.FRESH if now - last_end <= ttl else Freshness.STALE


class ValueStatus(StrEnum):
    """What the online store had for one value (Feast's field statuses)."""

    PRESENT = "present"
    NULL_VALUE = "null_value"
    NOT_FOUND = "not_found"
    OUTSIDE_MAX_AGE = "outside_max_age"


@dataclass(frozen=True)
class FeatureInfo:
    """One feature of a view."""

    name: str
    dtype: str
    description: str = ""


@dataclass(frozen=True)
class FeatureViewInfo:
    """A feature view (or an on-demand one, without TTL, source or materialization)."""

    name: str
    entities: tuple[str, ...]
    join_keys: tuple[str, ...]
    features: tuple[FeatureInfo, ...]
    ttl: timedelta | None
    source: str | None
    on_demand: bool
    description: str
    tags: Mapping[str, str]
    last_materialized: datetime | None
    freshness: Freshness | None
    request_inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntityInfo:
    """An entity and the key that identifies it."""

    name: str
    join_keys: tuple[str, ...]
    value_type: str
    description: str


@dataclass(frozen=True)
class FeatureServiceInfo:
    """A named set of features: what a model trains on and is served with."""

    name: str
    features: tuple[str, ...]  # "view:feature"
    description: str


@dataclass(frozen=True)
class Catalog:
    """The feature repository as it stands."""

    project: str
    entities: tuple[EntityInfo, ...]
    feature_views: tuple[FeatureViewInfo, ...]
    feature_services: tuple[FeatureServiceInfo, ...]

    def view(self, name: str) -> FeatureViewInfo | None:
        """A view by name."""
        return next((v for v in self.feature_views if v.name == name), None)

    def service(self, name: str) -> FeatureServiceInfo | None:
        """A feature service by name."""
        return next((s for s in self.feature_services if s.name == name), None)


@dataclass(frozen=True)
class OnlineFeatures:
    """Online values for entity rows: one row per entity row, in order."""

    columns: tuple[str, ...]  # join keys first, then the features ("view:feature")
    rows: tuple[Mapping[str, Any], ...]
    statuses: tuple[Mapping[str, ValueStatus], ...]


@dataclass(frozen=True)
class LookupProblem:
    """Why a lookup cannot run: the field and what is wrong with it."""

    field: str
    message: str


@dataclass(frozen=True)
class Lookup:
    """A checked online lookup: the feature references and the keys rows must carry."""

    features: tuple[str, ...]
    join_keys: tuple[str, ...]
    request_inputs: tuple[str, ...]
    problems: tuple[LookupProblem, ...] = field(default_factory=tuple)


def plan_lookup(
    catalog: Catalog,
    entity_rows: Sequence[Mapping[str, Any]],
    features: Sequence[str] | None,
    service: str | None,
) -> Lookup:
    """Check a lookup against the catalog: every feature must exist, every entity row must
    carry the join keys (and request inputs) of the views it reads, and nothing else."""
    problems: list[LookupProblem] = []
    refs: list[str] = []
    if service is not None:
        found = catalog.service(service)
        if found is None:
            problems.append(LookupProblem("feature_service", f"no feature service {service!r}"))
        else:
            refs = list(found.features)
    for index, ref in enumerate(features or ()):
        view_name, sep, feature = ref.partition(":")
        view = catalog.view(view_name) if sep else None
        if view is None or feature not in {f.name for f in view.features}:
            problems.append(
                LookupProblem(
                    f"features[{index}]",
                    f"unknown feature {ref!r}: use view:feature from GET /features",
                )
            )
        refs.append(ref)
    keys: list[str] = []
    inputs: list[str] = []
    for view_name in dict.fromkeys(ref.partition(":")[0] for ref in refs):
        view = catalog.view(view_name)
        if view is None:
            continue
        keys.extend(k for k in view.join_keys if k not in keys)
        inputs.extend(k for k in view.request_inputs if k not in inputs)
    allowed = set(keys) | set(inputs)
    for index, row in enumerate(entity_rows):
        missing = [k for k in keys if k not in row]
        unknown = [k for k in row if k not in allowed]
        if missing:
            problems.append(
                LookupProblem(f"entities[{index}]", f"missing join key(s) {', '.join(missing)}")
            )
        elif [k for k in inputs if k not in row]:
            needed = ", ".join(k for k in inputs if k not in row)
            problems.append(LookupProblem(f"entities[{index}]", f"missing request input {needed}"))
        if unknown and keys:  # without a known feature there is nothing to compare with
            problems.append(
                LookupProblem(
                    f"entities[{index}]",
                    f"unknown key(s) {', '.join(unknown)}: the features need {', '.join(keys)}",
                )
            )
    return Lookup(tuple(dict.fromkeys(refs)), tuple(keys), tuple(inputs), tuple(problems))


def service_signature(catalog: Catalog, service: str) -> tuple[tuple[str, str], ...] | None:
    """A feature service's schema (feature, type), None if it does not exist: what a model
    trained on the service relies on (the feature contract)."""
    found = catalog.service(service)
    if found is None:
        return None
    signature = []
    for ref in found.features:
        view_name, _, feature = ref.partition(":")
        view = catalog.view(view_name)
        dtype = next((f.dtype for f in view.features if f.name == feature), "?") if view else "?"
        signature.append((ref, dtype))
    return tuple(signature)
