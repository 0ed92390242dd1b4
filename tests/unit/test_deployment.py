from datetime import UTC, datetime

import pytest

from app.core.canary import CanaryPlan, Phase
from app.core.deployment import Arm, DeploySpec, plan, step_table, variant_name
from app.core.routing import Backend, Role, Strategy
from app.core.serving_stats import one_request
from app.errors import Conflict, ErrorCode, InvalidInput

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_variant_names() -> None:
    assert variant_name(3, Backend.RAY) == "v3"


def test_replace_keeps_the_old_versions_draining() -> None:
    first, _ = plan("m", DeploySpec(Strategy.REPLACE, version=1), None, 1, NOW, "salt", "eng")
    assert [(v.name, v.weight, v.role) for v in first.variants] == [("v1", 100, Role.PRIMARY)]
    second, rollout = plan(
        "m", DeploySpec(Strategy.REPLACE, version=2), first, 2, NOW, "new", "eng"
    )
    assert rollout is None and second.salt == "salt"  # not an experiment: same salt
    assert [(v.name, v.weight) for v in second.variants] == [("v2", 100), ("v1", 0)]


def test_ab_is_a_new_experiment() -> None:
    spec = DeploySpec(Strategy.AB, arms=(Arm(1, 60), Arm(2, 40)))
    table, _ = plan("m", spec, None, 1, NOW, "abcdef0123456789", "eng")
    assert table.experiment == "abcdef012345" and table.salt == "abcdef0123456789"
    assert [(v.name, v.weight, v.role) for v in table.variants] == [
        ("v1", 60, Role.PRIMARY),
        ("v2", 40, Role.CANDIDATE),
    ]
    with pytest.raises(InvalidInput):
        plan("m", DeploySpec(Strategy.AB, arms=(Arm(1, 60), Arm(2, 30))), None, 1, NOW, "s", "e")
    with pytest.raises(InvalidInput):
        plan("m", DeploySpec(Strategy.AB, arms=(Arm(1, 100),)), None, 1, NOW, "s", "e")


def test_canary_and_shadow_need_a_baseline() -> None:
    for strategy in (Strategy.CANARY, Strategy.SHADOW):
        with pytest.raises(Conflict) as refused:
            plan("m", DeploySpec(strategy, version=2), None, 1, NOW, "s", "eng")
        assert refused.value.code is ErrorCode.NOTHING_TO_COMPARE


def test_canary_plan_and_steps() -> None:
    base, _ = plan("m", DeploySpec(Strategy.REPLACE, version=1), None, 1, NOW, "s", "eng")
    stats = {"v1": one_request(5.0, True, 1.0)}
    spec = DeploySpec(Strategy.CANARY, version=2, canary=CanaryPlan(steps=(10, 50, 100)))
    table, rollout = plan("m", spec, base, 2, NOW, "s", "eng", stats)
    assert rollout is not None and rollout.baseline == "v1" and rollout.canary == "v2"
    assert rollout.baseline_snapshot.requests == 1 and rollout.canary_snapshot.requests == 0
    assert {v.name: v.weight for v in table.serving()} == {"v1": 90, "v2": 10}
    from dataclasses import replace

    stepped = step_table(table, replace(rollout, step_index=1), 3, NOW)
    assert {v.name: v.weight for v in stepped.serving()} == {"v1": 50, "v2": 50}
    done = step_table(table, replace(rollout, step_index=2, phase=Phase.COMPLETED), 4, NOW)
    assert {v.name: v.weight for v in done.serving()} == {"v2": 100}
    assert done.strategy is Strategy.REPLACE and done.variant("v2").role is Role.PRIMARY
    back = step_table(table, replace(rollout, phase=Phase.ROLLED_BACK), 5, NOW)
    assert {v.name: v.weight for v in back.serving()} == {"v1": 100}
    for steps in ((50, 10, 100), (10, 50), (0, 100), ()):
        with pytest.raises(InvalidInput):
            plan(
                "m",
                DeploySpec(Strategy.CANARY, version=2, canary=CanaryPlan(steps=steps)),
                base,
                2,
                NOW,
                "s",
                "eng",
            )
    with pytest.raises(InvalidInput):
        plan("m", DeploySpec(Strategy.CANARY, version=1), base, 2, NOW, "s", "eng")


def test_shadow_adds_a_mirror() -> None:
    base, _ = plan("m", DeploySpec(Strategy.REPLACE, version=1), None, 1, NOW, "s", "eng")
    table, _ = plan(
        "m", DeploySpec(Strategy.SHADOW, version=2, shadow_percent=30), base, 2, NOW, "s", "eng"
    )
    assert table.shadow_percent == 30 and table.shadow().name == "v2"
    assert [v.name for v in table.serving()] == ["v1"]
    with pytest.raises(InvalidInput):
        plan("m", DeploySpec(Strategy.SHADOW, version=1), base, 2, NOW, "s", "eng")
