import pytest

from app.core.feedback import (
    Feedback,
    FeedbackRules,
    PredictionRef,
    RegressionMetric,
    outcome_of,
)
from app.errors import InvalidInput


def ref(*predictions: object) -> PredictionRef:
    return PredictionRef("r1", "m", "v1", 1, 0.0, predictions)


def test_outcomes() -> None:
    assert outcome_of(ref(1), Feedback("r1", outcome=0.25)) == 0.25
    assert outcome_of(ref(1), Feedback("r1", label=1)) == 1.0
    assert outcome_of(ref(1.0), Feedback("r1", label=1)) == 1.0
    assert outcome_of(ref("cat"), Feedback("r1", label="dog")) == 0.0
    assert outcome_of(ref([0.2, 0.8]), Feedback("r1", label=1)) == 1.0  # arg-max of scores
    assert outcome_of(ref(1, 0, 1, 1), Feedback("r1", label=[1, 1, 1, 1])) == 0.75
    assert outcome_of(ref(1, 1), Feedback("r1", label=1)) == 1.0  # one label for all rows


def test_class_scores_as_a_mapping_are_read_by_their_top_class() -> None:
    # what the sample churn classifier answers per row (issue: always scored wrong before)
    row = {"0": 0.77, "1": 0.23}
    assert outcome_of(ref(row), Feedback("r1", label=0)) == 1.0
    assert outcome_of(ref(row), Feedback("r1", label="0")) == 1.0
    assert outcome_of(ref(row), Feedback("r1", label=1)) == 0.0
    assert outcome_of(ref(row, {"0": 0.1, "1": 0.9}), Feedback("r1", label=[0, 1])) == 1.0
    assert outcome_of(ref({"cat": 0.2, "dog": 0.8}), Feedback("r1", label="dog")) == 1.0


def test_a_single_probability_is_read_with_the_threshold() -> None:
    assert outcome_of(ref([0.9]), Feedback("r1", label=1)) == 1.0
    assert outcome_of(ref(0.3), Feedback("r1", label=0)) == 1.0
    assert outcome_of(ref(0.3), Feedback("r1", label=True)) == 0.0
    strict = FeedbackRules(binary_threshold=0.95)
    assert outcome_of(ref(0.9), Feedback("r1", label=1), strict) == 0.0


def test_regression_values_score_minus_their_error() -> None:
    assert outcome_of(ref(3.5, 1.25), Feedback("r1", label=[3.0, 2.0])) == pytest.approx(-0.625)
    squared = FeedbackRules(regression_metric=RegressionMetric.NEG_SQUARED_ERROR)
    assert outcome_of(ref(3.5), Feedback("r1", label=2.5), squared) == pytest.approx(-1.0)


def test_bad_feedback() -> None:
    with pytest.raises(InvalidInput):
        outcome_of(ref(1, 0), Feedback("r1", label=[1, 0, 1]))
    with pytest.raises(InvalidInput):
        outcome_of(ref(1), Feedback("r1"))


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ([0.2, 0.8], "dog"),  # scores as a list need a class index
        (3.7, "high"),  # a regression value needs a number
        ({"0": 0.5, "1": 0.5}, {"class": 1}),  # a label is one value
        ({"0": "high", "1": "low"}, 1),  # scores that are not numbers
    ],
)
def test_labels_that_cannot_be_compared_are_refused_naming_the_field(
    prediction: object, label: object
) -> None:
    with pytest.raises(InvalidInput) as refused:
        outcome_of(ref(prediction), Feedback("r1", label=label), field="items[3].label")
    assert refused.value.field_errors[0].field == "items[3].label"
