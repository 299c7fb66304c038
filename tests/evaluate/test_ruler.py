"""``longrope.evaluate.ruler``: the paper table's averages and the writers, as the Python API takes them."""

from __future__ import annotations

import pytest

from longrope.errors import UserError
from longrope.evaluate.ruler import Cell, averages, write_ruler_outputs


def _cell(s, n, task, scores):
    return Cell(s, n, task, len(scores), float(sum(scores)), 1.0, "x", scores, ["r"] * len(scores))


CELLS = [_cell("yarn", 256, "niah_single_1", [1.0, 1.0]), _cell("yarn", 256, "vt", [0.0, 0.0])]


def test_averages_are_the_mean_over_tasks_then_lengths():
    assert averages(CELLS, ["yarn"], [256], ["niah_single_1", "vt"]) == {"yarn": {"by_length": {256: 0.5}, "avg": 0.5}}


@pytest.mark.parametrize("sets, lengths, tasks, needle", [
    (["yarn"], [256, 256], ["niah_single_1", "vt"], "lengths gives 256 twice; give each length once"),
    (["yarn"], [256], ["niah_single_1", "vt", "vt"], "tasks gives 'vt' twice; give each task once"),
    (["yarn", "yarn"], [256], ["niah_single_1", "vt"], "sets gives 'yarn' twice; give each factor set once"),
])
def test_a_length_task_or_set_given_twice_is_refused_not_averaged_twice_or_never(tmp_path, sets, lengths, tasks,
                                                                                  needle):
    # battery 27: lengths [256, 256] left every average None for good (one column counted against two), a task
    # given twice weighed twice in its length's mean (here 0.67 for 0.5)
    with pytest.raises(UserError, match=needle):
        averages(CELLS, sets, lengths, tasks)
    with pytest.raises(UserError, match=needle):
        write_ruler_outputs(tmp_path, CELLS, sets=sets, lengths=lengths, tasks=tasks, record={}, plot=False)
    assert not any(tmp_path.iterdir())
