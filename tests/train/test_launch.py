"""``longrope.train.launch``: the shipped accelerate configs and the launcher variables of the environment."""

from __future__ import annotations

import pytest

from longrope.train.launch import launch_problem

_GROUP = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("env, says", [
    ({"RANK": "1"}, "holds RANK=1 but not LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT"),
    ({"LOCAL_RANK": "3"}, "holds LOCAL_RANK=3 but not RANK"),
    ({**_GROUP, "MASTER_PORT": ""}, "but not MASTER_PORT"),
    ({**_GROUP, "RANK": "a"}, "RANK is 'a', not a number >= 0"),
    ({**_GROUP, "RANK": "2"}, "describe no process of a group"),
    ({**_GROUP, "LOCAL_RANK": "1", "RANK": "0"}, "describe no process of a group"),
])
def test_launcher_variables_left_from_another_job_are_named_with_the_fix(env, says):
    problem = launch_problem(env)
    assert problem is not None and says in problem and "unset RANK" in problem and "torchrun" in problem


@pytest.mark.parametrize("env", [{}, {"MASTER_ADDR": "x"}, _GROUP, {**_GROUP, "RANK": "0", "LOCAL_RANK": "0"}])
def test_no_launcher_or_a_launcher_s_whole_set_is_no_problem(env):
    assert launch_problem(env) is None


def test_a_stray_local_rank_no_longer_silences_a_command_s_error(monkeypatch, capsys):
    """``LOCAL_RANK=3`` in the environment (no launcher) made every command's one-line error unsaid (exit 2, nothing
    printed: only LOCAL_RANK 0 tells); ``RANK=1`` alone made finetune write no run record."""
    from longrope.cli import main

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert main(["inspect", "--model", "no-such-model-here"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LOCAL_RANK=3" in err[0] and err[0].startswith("longrope inspect: error: ")
