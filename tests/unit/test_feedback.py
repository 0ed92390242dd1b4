import pytest

from app.core.feedback import Feedback, PredictionRef, outcome_of
from app.errors import InvalidInput


def ref(*predictions: object) -> PredictionRef:
    return PredictionRef("r1", "m", "v1", 1, 0.0, predictions)


def test_outcomes() -> None:
    assert outcome_of(ref(1), Feedback("r1", outcome=0.25)) == 0.25
    assert outcome_of(ref(1), Feedback("r1", label=1)) == 1.0
    assert outcome_of(ref(1.0), Feedback("r1", label=1)) == 1.0
    assert outcome_of(ref("cat"), Feedback("r1", label="dog")) == 0.0
    assert outcome_of(ref([0.2, 0.8]), Feedback("r1", label=1)) == 1.0  # arg-max of scores
    assert outcome_of(ref([0.9]), Feedback("r1", label=1)) == 0.0
    assert outcome_of(ref(1, 0, 1, 1), Feedback("r1", label=[1, 1, 1, 1])) == 0.75
    assert outcome_of(ref(1, 1), Feedback("r1", label=1)) == 1.0  # one label for all rows


def test_bad_feedback() -> None:
    with pytest.raises(InvalidInput):
        outcome_of(ref(1, 0), Feedback("r1", label=[1, 0, 1]))
    with pytest.raises(InvalidInput):
        outcome_of(ref(1), Feedback("r1"))
