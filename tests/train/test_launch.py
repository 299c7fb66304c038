"""``longrope.train.launch``: the shipped accelerate configs and the launcher variables of the environment."""

from __future__ import annotations

import pytest

from longrope.train.launch import launch_problem

_GROUP = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
_MEETING = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("env, says", [
    ({"LOCAL_RANK": "3"}, "LOCAL_RANK=3 names a process of no launched group (WORLD_SIZE unset)"),
    ({"LOCAL_RANK": "2", "WORLD_SIZE": "2"}, "LOCAL_RANK=2 names a process of no launched group (WORLD_SIZE 2)"),
    ({"LOCAL_RANK": "x"}, "LOCAL_RANK is 'x', not a number >= 0"),
])
def test_a_local_rank_of_no_group_is_refused_for_every_command(env, says):
    problem = launch_problem(env)
    assert problem is not None and says in problem and "unset LOCAL_RANK" in problem


@pytest.mark.parametrize("env, says", [
    ({"RANK": "1"}, "holds RANK=1 but not WORLD_SIZE, MASTER_ADDR, MASTER_PORT"),
    ({"WORLD_SIZE": "2"}, "holds WORLD_SIZE=2 but not RANK, MASTER_ADDR, MASTER_PORT"),
    ({**_GROUP, "MASTER_PORT": ""}, "but not MASTER_PORT"),
    ({**_GROUP, "RANK": "a"}, "RANK is 'a', not a number >= 0"),
    ({**_GROUP, "RANK": "2"}, "describe no process of a group"),
    ({**_GROUP, "LOCAL_RANK": "1", "RANK": "0"}, "describe no process of a group"),
])
def test_a_fine_tuning_refuses_launcher_variables_of_no_group(env, says):
    problem = launch_problem(env, training=True)
    assert problem is not None and says in problem and "unset RANK" in problem and "torchrun" in problem


@pytest.mark.parametrize("env", [{}, {"MASTER_ADDR": "x"}, _GROUP, {**_GROUP, "RANK": "0", "LOCAL_RANK": "0"},
                                 {"RANK": "3", "WORLD_SIZE": "4", **_MEETING}])  # a Kubeflow pod: no LOCAL_RANK
def test_no_launcher_or_a_launcher_s_set_is_no_problem(env):
    assert launch_problem(env) is None and launch_problem(env, training=True) is None


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "8", **_MEETING}, {"RANK": "0", "WORLD_SIZE": "1"}])
def test_a_batch_script_s_exported_variables_leave_commands_that_do_not_train_alone(env):
    """The review of battery 25: an sbatch script's exported WORLD_SIZE and MASTER_* (for the torchrun it starts
    later) refused a longrope tokenize or eval in the same script."""
    assert launch_problem(env) is None


def test_a_stray_local_rank_no_longer_silences_a_command_s_error(monkeypatch, capsys):
    """``LOCAL_RANK=3`` in the environment (no launcher) made every command's one-line error unsaid (exit 2, nothing
    printed: only LOCAL_RANK 0 tells)."""
    from longrope.cli import main

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert main(["inspect", "--model", "no-such-model-here"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LOCAL_RANK=3" in err[0] and err[0].startswith("longrope inspect: error: ")
