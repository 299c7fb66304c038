"""``python -m tools.train_tiny``: the command line of :mod:`tools.train_tiny.run`.

Its options come from the run's config as ``longrope``'s runs' do, and it runs through ``longrope``'s
own :func:`longrope.cli.main` (the same ``--config RUN_DIR``, the same one-line errors and exit 2).
"""

from __future__ import annotations

import sys

from longrope.cli import main as cli_main
from longrope.cli import run_parser
from tools.train_tiny.run import PROGRAM, SPEC


def main(argv: list[str] | None = None) -> int:
    return cli_main(argv, parser=run_parser(PROGRAM, SPEC))


if __name__ == "__main__":
    sys.exit(main())
