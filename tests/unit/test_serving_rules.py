"""Which stages may take which traffic, and the evidence a promotion asks serving for."""

import pytest

from app.core.deployment import Arm, DeploySpec
from app.core.gates import Evidence
from app.core.lifecycle import ModelStage
from app.core.promotion_evidence import (
    EvidenceRequest,
    ServingFacts,
    checked_facts,
    evidence_request,
)
from app.core.routing import Strategy
from app.core.serving_rules import check_stages
from app.errors import Conflict, ErrorCode, InvalidInput, NotFound

DEV, STAGING, PROD, ARCHIVED = (
    ModelStage.DEVELOPMENT,
    ModelStage.STAGING,
    ModelStage.PRODUCTION,
    ModelStage.ARCHIVED,
)


def test_development_versions_only_shadow() -> None:
    stages = {1: PROD, 2: DEV, 3: STAGING, 4: ARCHIVED}
    check_stages("m", DeploySpec(Strategy.SHADOW, 2), stages)
    check_stages("m", DeploySpec(Strategy.CANARY, 3), stages)
    for spec in (
        DeploySpec(Strategy.REPLACE, 2),
        DeploySpec(Strategy.CANARY, 2),
        DeploySpec(Strategy.AB, arms=(Arm(1, 50), Arm(2, 50))),
    ):
        with pytest.raises(Conflict) as refused:
            check_stages("m", spec, stages)
        assert refused.value.code is ErrorCode.STAGE_NOT_ALLOWED
    with pytest.raises(InvalidInput):
        check_stages("m", DeploySpec(Strategy.SHADOW, 4), stages)
    with pytest.raises(NotFound):
        check_stages("m", DeploySpec(Strategy.REPLACE, 9), stages)


def test_a_promotion_asks_serving_what_its_gates_weigh() -> None:
    stages = [(1, PROD), (2, PROD), (3, STAGING)]
    assert evidence_request(stages, 3, PROD) == EvidenceRequest(
        integration=(3,), ab_tests=((3, 2),), traffic=(1, 2)
    )
    assert evidence_request([(1, STAGING)], 1, PROD).ab_tests == ((1, None),)
    assert evidence_request(stages, 1, ARCHIVED) == EvidenceRequest(traffic=(1,))
    assert evidence_request(stages, 3, STAGING).empty


def test_stale_serving_evidence_is_refused_as_a_concurrent_change() -> None:
    asked = evidence_request([(1, STAGING), (2, STAGING)], 2, PROD)
    facts = ServingFacts(asked, {2: Evidence(True, {})}, {(2, None): None}, {})
    assert checked_facts("m", [(1, STAGING), (2, STAGING)], 2, PROD, facts) is facts
    with pytest.raises(Conflict) as stale:  # version 1 reached production meanwhile
        checked_facts("m", [(1, PROD), (2, STAGING)], 2, PROD, facts)
    assert stale.value.code is ErrorCode.ILLEGAL_TRANSITION
    assert checked_facts("m", [(1, PROD)], 1, ARCHIVED, None).traffic == {}
