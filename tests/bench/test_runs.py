"""``bench._runs``: what a benchmark reads from a run folder."""

from __future__ import annotations

import os


def test_a_recorded_command_drops_the_program_however_it_was_typed():
    """run.json's argv begins "python -m longrope" when the package ran as a module (battery 20c); the records took
    one word for the program and said "longrope -m longrope pipeline ..." (battery 21, lead). Paths under the working
    directory are written relative to it."""
    from bench._runs import command

    here = os.getcwd()
    for program in (["longrope"], ["/venv/bin/longrope"], ["python", "-m", "longrope"]):
        run = {"argv": [*program, "pipeline", "--model", "tiny", "-o", f"{here}/runs/p", "--note", "a b"]}
        assert command(run) == "longrope pipeline --model tiny -o runs/p --note 'a b'"
    assert command({}) == "longrope"
