import pytest

from app.core.tracking import RunStatus, check_run_transition, key_problem
from app.errors import Conflict, ErrorCode


@pytest.mark.parametrize("key", ["accuracy", "val/loss", "a.b-c_d", "epoch 1", "ns:metric"])
def test_valid_keys(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(
    "key", ["", "a" * 251, "bad!", "a//b", "../x", "/abs", "x/..", "./x", ".", "tab\tkey"]
)
def test_invalid_keys(key: str) -> None:
    assert key_problem(key)


def test_an_ended_run_takes_no_more_data() -> None:
    check_run_transition("r", RunStatus.RUNNING, None)
    check_run_transition("r", RunStatus.RUNNING, RunStatus.FINISHED)
    for ended in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED):
        with pytest.raises(Conflict) as refused:
            check_run_transition("r", ended, None)
        assert refused.value.code is ErrorCode.RUN_ALREADY_TERMINATED


def test_terminal_flag() -> None:
    assert not RunStatus.RUNNING.terminal
    assert RunStatus.KILLED.terminal
