"""Thin command-line front end: ``longrope COMMAND ...``.

Each command lives in its own module of this package, which defines

- ``COMMAND`` (its name), ``HELP`` (one line),
- ``add_arguments(parser)`` (argparse only, no heavy imports), and
- ``run(args) -> int`` (imports the library inside, does the work, returns the exit status).

Only argparse is imported at start-up, so ``longrope --help`` is instant. A
:class:`longrope.errors.UserError` raised anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order ``--help`` lists them. A module that is missing (work in
# progress) is skipped rather than breaking every other command.
_COMMAND_MODULES = [
    "inspect_cmd",
    "baseline",
    "export",
    "tokenize",
    "eval_cmd",
    "search_cmd",
    "train_tiny",
    "demo",
]


def _load_commands():
    mods = []
    for name in _COMMAND_MODULES:
        try:
            mods.append(importlib.import_module(f"longrope.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"longrope.cli.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longrope",
        description="Extend the context window of RoPE language models (LongRoPE).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _load_commands():
        p = sub.add_parser(
            mod.COMMAND,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=getattr(mod, "EXAMPLE", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from longrope import __version__

        print(__version__)
        return 0
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from longrope.errors import UserError

    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"longrope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"longrope {args.command}: interrupted", file=sys.stderr)
        return 130
