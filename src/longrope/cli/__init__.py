"""Thin command-line front end: ``longrope COMMAND ...``.

Two kinds of commands:

- **runs** (``search``, ``eval ppl|passkey``, ``finetune``, ``pipeline``, ``demo``): their options are built from
  the fields of the run's config dataclass (:mod:`longrope.runs`), so defaults and help live in one
  place; ``--config RUN_DIR`` starts from a recorded run's configuration (flags given override it),
  and ``longrope rerun RUN_DIR`` repeats a recorded run;
- **tools** (``inspect``, ``baseline``, ``export``, ``tokenize``, ``generate``): a module each here,
  defining ``COMMAND``, ``HELP``, ``CONFIG`` (a config dataclass of :mod:`longrope.tools`, whose fields
  give the options as the runs' do) and ``run(config) -> int``.

Errors: a :class:`longrope.errors.UserError` anywhere becomes one line on stderr and exit status
2; a :class:`~longrope.errors.ConfigError` names the offending flag; so does argparse's own
complaint (one line, not the usage block). Heavy libraries are imported inside commands, so
``longrope --help`` is instant.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import importlib
import os
import re
import sys
from typing import Any

_TOOL_MODULES = ["inspect_cmd", "baseline", "export", "tokenize", "generate"]
_RUN_ORDER = ["search", "eval", "finetune", "pipeline", "demo"]


class _ArgError(Exception):
    """argparse's complaint, as one line for :func:`main` to print."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``longrope search: error: ... (see --help)``), exit 2; options are taken
    as spelled, never abbreviated (``--mod tiny --len 256`` ran as --model/--lengths: one spelling per setting, and
    a command that a later option would make ambiguous does not stop working)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)  # what error() may have to explain
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        if _NO_VALUE.search(message):  # '-o -x.json': argparse takes a value that starts with '-' for an option
            message += " (a value that starts with '-' is given as --option=VALUE, or a path as ./VALUE)"
        elif message.startswith(_MISSING) and any(self._set_aside(getattr(self, "_given", ()))):
            # 'rerun -run -o x': a RUN_DIR starting with '-' was taken for an option, and the line said only that
            # RUN_DIR was missing (battery 23a)
            message += " (a value that starts with '-' is given as a path: ./VALUE)"
        raise _ArgError(f"{self.prog}: error: {_named_once(message)} (see {self.prog} --help)")

    def _set_aside(self, given: Any) -> list[str]:
        """The words of ``given`` that start with '-' and are none of this parser's options, nor an option's value
        (``--seed -1``), nor a short option with its value attached (``-ox.json``): a value argparse set aside."""
        words = [a for a in given if isinstance(a, str)]
        out = []
        for i, arg in enumerate(words):
            if not arg.startswith("-") or arg == "-" or arg.startswith("--") or _NEGATIVE_NUMBER.match(arg):
                continue
            if arg.partition("=")[0] in self._option_string_actions or arg[:2] in self._option_string_actions:
                continue
            before = self._option_string_actions.get(words[i - 1].partition("=")[0]) if i else None
            if before is not None and before.nargs != 0 and "=" not in words[i - 1]:
                continue  # the value of the option before it
            out.append(arg)
        return out


#: argparse's words for a positional argument that is missing
_MISSING = "the following arguments are required:"

_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


#: argparse's words for an option given no value, which is what a value starting with '-' ('-o -y.json', a file
#: named '-y.json') looks like to it: the problem was said, not how to give such a value (battery 21)
_NO_VALUE = re.compile(r"expected (one|at least one) argument")


def _named_once(message: str) -> str:
    """argparse prefixes a value's error with ``argument --flag:``; our parsers' messages already start
    with the flag (the same parsers serve configs and plans), so the prefix goes where it would repeat it."""
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("argument ") and any(rest.startswith(o) for o in head[9:].split("/")):
        return rest
    return message


def _add_run(sub, spec) -> None:
    name = spec.command.split()[-1]
    p = sub.add_parser(name, help=spec.help, description=spec.description, epilog=spec.example,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(p, spec)


def run_parser(prog: str, spec) -> argparse.ArgumentParser:
    """The command line of a program that is one run (a repository tool: ``python -m tools.train_tiny``), as
    ``longrope``'s subcommand for it would be; :func:`main` runs it (``main(argv, parser=...)``)."""
    p = _Parser(prog=prog, description=spec.description, epilog=spec.example,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(p, spec)
    return p


def _add_run_options(p: argparse.ArgumentParser, spec) -> None:
    """``--config RUN_DIR`` and one option per field of ``spec``'s config."""
    from longrope.options import add_options, user_path_text

    p.add_argument("--config", default=None, metavar="RUN_DIR", type=user_path_text,
                   help="start from the configuration a run recorded (RUN_DIR or its config.json); "
                        "flags given override it")
    add_options(p, spec.config)
    p.set_defaults(_spec=spec)


def build_parser() -> argparse.ArgumentParser:
    from longrope.runs import RUNS, get_run

    parser = _Parser(prog="longrope", description="Extend the context window of RoPE language models (LongRoPE).")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _TOOL_MODULES[:4]:
        _add_tool(sub, name)
    for top in _RUN_ORDER:
        commands = [c for c in RUNS if c.split()[0] == top]
        if commands == [top]:
            _add_run(sub, get_run(top))
            continue
        group = sub.add_parser(top, help=f"{top}: " + ", ".join(c.split()[1] for c in commands),
                               description=f"longrope {top} KIND: " + "; ".join(
                                   f"{c.split()[1]} — {get_run(c).help}" for c in commands),
                               epilog="\n".join(get_run(c).example for c in commands),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        kinds = group.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=_Parser)
        for c in commands:
            _add_run(kinds, get_run(c))
    for name in _TOOL_MODULES[4:]:
        _add_tool(sub, name)
    r = sub.add_parser("rerun", help="repeat a recorded run from its run folder's config.json",
                       description="Repeat the run recorded in RUN_DIR with the same configuration; deterministic "
                                   "commands give the same numbers.",
                       epilog="example:\n  longrope rerun runs/search-2k -o runs/search-2k-again",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    from longrope.options import OUTPUT_ALIASES, OUTPUT_FLAGS, user_path_text

    r.add_argument("run_dir", metavar="RUN_DIR", type=user_path_text,
                   help="a run folder written by search, eval, finetune, pipeline or demo")

    # required, checked in main(): argparse's own check would not count the older spelling --out
    r.add_argument(*OUTPUT_FLAGS, dest="output", default=argparse.SUPPRESS, metavar="NEW_DIR", type=user_path_text,
                   help="where the new run goes (required)")
    r.add_argument(*OUTPUT_ALIASES, dest="output", default=argparse.SUPPRESS, type=user_path_text,
                   help=argparse.SUPPRESS)
    r.set_defaults(_rerun=True)
    return parser


def _add_tool(sub, name: str) -> None:
    from longrope.options import add_options

    mod = importlib.import_module(f"longrope.cli.{name}")
    description = re.sub(r"``(.+?)``", r"\1", getattr(mod, "DESCRIPTION", mod.HELP), flags=re.S)  # a docstring's
    p = sub.add_parser(mod.COMMAND, help=mod.HELP, description=description,  # markup is not --help's text
                       epilog=getattr(mod, "EXAMPLE", None), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, mod.CONFIG)
    p.set_defaults(_tool=mod)


def _apply_quiet(config: Any) -> None:
    """``--quiet`` (where a command has it): no progress bars, transformers' own (loading, saving) included."""
    if getattr(config, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _run_tool(args: argparse.Namespace) -> int:
    from longrope.options import config_from_args

    mod = args._tool
    config = config_from_args(mod.CONFIG, args)
    _apply_quiet(config)
    return mod.run(config)  # looked up now: a test may replace run


def _enter_recorded_cwd(args: argparse.Namespace) -> None:
    """Work in the folder the recorded run was started in, so that its relative paths (``--data shards``) name
    the same inputs; ``RUN_DIR`` and ``-o`` keep meaning what they mean here. (From another folder a rerun
    read them against that one: "cannot read factor file yarn.json".)"""
    from pathlib import Path

    from longrope.runs.folder import read_run_cwd

    recorded = read_run_cwd(args.run_dir)
    if recorded is not None and recorded.resolve() != Path.cwd().resolve():
        args.run_dir, args.output = os.path.abspath(args.run_dir), os.path.abspath(args.output)
        os.chdir(recorded)


def _check_rerun_output(output: str, run_dir: str, command: str, *, resumable: bool) -> None:
    """``rerun`` repeats a run into a new folder; an existing one was refused further on with the hint of
    the command's own ``--resume``, which ``rerun`` has not."""
    from pathlib import Path

    from longrope.errors import UserError
    from longrope.io import holds_work

    out = Path(output)
    if out.is_dir() and holds_work(out):
        from longrope.runs.folder import run_folder_of

        source = run_folder_of(run_dir)
        same = out.resolve() == source.resolve()
        raise UserError(f"-o {out} {'is the run being repeated' if same else 'already exists and is not empty'}; "
                        f"rerun writes a new folder: choose one that does not exist"
                        + (f" (to continue that run instead: longrope {command} --config {source} --resume)"
                           if same and resumable else ""))


def _run_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from longrope.errors import UserError
    from longrope.options import config_from_args, config_from_dict
    from longrope.runs import get_run
    from longrope.runs.folder import read_run_config, recorded_paths_here, run_folder_of

    if getattr(args, "_rerun", False):
        from dataclasses import fields

        if not hasattr(args, "output"):  # not argparse's required=True, which would not count --out
            raise UserError("the following arguments are required: -o/--output (see longrope rerun --help)")

        command, saved = read_run_config(args.run_dir)
        spec = get_run(command)
        args._spec = spec
        recorded = spec.recorded(saved, run_folder_of(args.run_dir))
        _check_rerun_output(args.output, args.run_dir, command,
                            resumable=any(f.name == "resume" for f in fields(spec.config)))
        _enter_recorded_cwd(args)  # before the configuration is built: its checks read the recorded relative paths
        config = config_from_dict(spec.config, recorded)  # (eval ruler's --haystack: "no such file" from elsewhere)
        updates = {spec.output_field: args.output}
        if hasattr(config, "resume"):
            updates["resume"] = False
        config = replace(config, **updates)
    else:
        spec = args._spec
        given = args.config is not None  # --config '' (an unset variable) is refused, not read as no --config
        saved = recorded_paths_here(read_run_config(args.config)[1], args.config) if given else None
        if given and read_run_config(args.config)[0] != spec.command:
            from longrope.errors import UserError

            raise UserError(f"--config {args.config} was recorded by '{read_run_config(args.config)[0]}', "
                            f"not '{spec.command}'")
        recorded = spec.recorded(saved, run_folder_of(args.config)) if saved is not None else None
        if recorded is not None and "resume" in recorded:  # how that run was started, not a setting of it: a
            recorded = {**recorded, "resume": False}  # resumed run's folder gave 'nothing to resume' in a new -o
        if recorded is not None and getattr(args, "resume", False) and not hasattr(args, spec.output_field):
            # the folder --config names, not the output it records (where the run was started: a copied
            # folder resumed the original, a moved one said there was nothing to resume)
            recorded = {**recorded, spec.output_field: str(run_folder_of(args.config))}
        config = config_from_args(spec.config, args, saved=recorded)
    _apply_quiet(config)
    result = spec.run(config)
    if not _first_on_machine():  # the result is the same in every process of the group: printed once (battery 15)
        return 0
    text = spec.render(result)
    if text:
        print(text)
    print(getattr(config, spec.output_field) if getattr(config, spec.output_field, None) else result.get("run_dir"),
          flush=True)
    return 0


def _stdout_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll reports an error on it)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file behind stdout (a test's capture), no poll
        return False


def _tell(line: str, *, every_process: bool = False) -> None:
    """Print one of the command's own one-line errors (or "interrupted") on stderr, once per machine: under
    ``accelerate launch`` / torchrun every process runs the same command line and the same checks, so a refused
    input was told once per process (two processes: twice, in two wordings for one folder; battery 15). The
    machine's first process (``LOCAL_RANK`` 0, or no launcher) tells it; the others exit with the same status. A
    process's own failure (``every_process``: a lost peer) is told by each process that meets it.

    Under a launcher the teller is the machine's first process to tell anything, whatever its rank: a refusal met by
    one process only (another ``CUDA_VISIBLE_DEVICES`` or file system in its environment, a check raced by a change)
    was never told, since only LOCAL_RANK 0 spoke, and LOCAL_RANK 0, stopped by torchrun, said "terminated (SIGTERM);
    nothing was written yet: run the same command again" (battery 21c)."""
    if every_process or _first_to_tell():
        from longrope.errors import one_line

        print(one_line(line), file=sys.stderr)  # an argument holding a newline ('--bogus $'a\nb'') stays in it


def _first_to_tell() -> bool:
    """Whether this process is the one of its machine's launched group that tells the group's refusal: the first to
    claim the group's marker file (named by the launcher's pid and run id) in the temporary folder; without a
    launcher, or where no marker can be made, :func:`_first_on_machine`."""
    global _TELLER
    group = os.environ.get("TORCHELASTIC_RUN_ID")
    if "LOCAL_RANK" not in os.environ or not group:
        return _first_on_machine()
    if _TELLER is not None:  # decided already in this process: it tells all it has to, or nothing
        return _TELLER
    import hashlib
    import tempfile
    from pathlib import Path

    key = hashlib.sha256(f"{os.getppid()}:{group}:{os.environ.get('TORCHELASTIC_RESTART_COUNT', '')}".encode())
    folder = Path(tempfile.gettempdir()) / "longrope-told"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        _forget_finished_groups(folder)
        os.close(os.open(folder / f"{os.getppid()}-{key.hexdigest()[:20]}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _TELLER = True
    except FileExistsError:
        _TELLER = False
    except OSError:
        _TELLER = _first_on_machine()
    return _TELLER


#: whether this process tells its launched group's refusals (None: not decided yet)
_TELLER: bool | None = None


def _forget_finished_groups(folder: Any) -> None:
    """Remove the markers of launchers that no longer run (their pid leads the marker's name)."""
    from pathlib import Path

    for marker in folder.iterdir():
        pid = marker.name.split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and Path("/proc/self").exists():
            marker.unlink(missing_ok=True)


def _first_on_machine() -> bool:
    """Whether this process tells what every process of an ``accelerate launch`` group would tell alike (its
    errors, its printed result): the machine's first (``LOCAL_RANK`` 0), or any process run without a launcher."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0
    except ValueError:
        return True


#: how pathlib's resolve() (Python < 3.13) words a path through a symbolic link that loops: a RuntimeError, where
#: every other call on such a path raises OSError ELOOP (search / eval ppl -o LOOP were a 30-line traceback, battery 18)
_SYMLINK_LOOP = re.compile(r"Symlink loop from '(.*)'", re.DOTALL)

#: how the loader words a shared library it could not map for want of address space (``ulimit -v``)
_MAP_FAILED = re.compile(r"failed to map segment|cannot allocate memory", re.IGNORECASE)


def _raised_by_an_import(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a module was being imported (a module's body on its way)."""
    if isinstance(exc, ImportError):
        return True
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code  # a module's body runs as '<module>' (importlib takes its own frames out)
        if code.co_name == "<module>" or code.co_filename.startswith("<frozen importlib"):
            return True
        tb = tb.tb_next
    return False


#: the address space (bytes) torch, transformers and the libraries they load (scipy's BLAS through transformers'
#: model classes) take before a command's own work: 0.7 GB for inspect, 1.05-1.1 GB for a command that loads the
#: tiny model (tokenize, generate, export; VmPeak, torch 2.13 on Linux)
LIBRARY_ADDRESS_SPACE = 1 << 30


def _address_space_too_small() -> str | None:
    """Why this process cannot load its libraries under its address-space limit (``ulimit -v``), with the fix; None
    when there is no such limit or it is at least :data:`LIBRARY_ADDRESS_SPACE`. Checked before a command imports
    torch: under a smaller limit the import aborted the process ('terminate called after throwing an instance of
    std::bad_alloc', status 134, at 500 MB), scipy's BLAS spun for ever on its first allocation (800 MB: a command
    that never ended), a library that could not be mapped was blamed on the attention implementation (900 MB), and
    the tiny model's 18 MB of weights were told to use shorter sequences (1 GB; battery 21)."""
    from longrope.evaluate.memory import address_space_limit

    limit = address_space_limit()
    if limit is None or limit >= LIBRARY_ADDRESS_SPACE:
        return None
    need = LIBRARY_ADDRESS_SPACE // 1024
    return (f"this process's address-space limit (ulimit -v {limit // 1024} KiB) is below the {need:,} KiB (1 GiB) that "
            f"torch and transformers take to load, under which they abort or hang; raise it (ulimit -v {need} or more, "
            "or unlimited) and run the command again")


def _write_refused(name: str, exc: BaseException, where: str = "", then: str = "") -> int | None:
    """The one line for a write the disk could not take (every command: one check, :func:`longrope.io.is_disk_full`)
    or that passed the file-size limit (``ulimit -f``: safetensors' save was a traceback, gguf's writer said the disk
    was full, battery 13); None for any other error. A short write under a finite limit may be either: both named.
    ``then``: what a resumable run adds (:func:`_how_to_continue`): a search stopped by the limit said only 'write a
    smaller output', not that its work is kept for --resume (battery 21)."""
    from longrope.io import is_disk_full, is_file_too_large

    try:
        import resource

        limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
    except (ImportError, AttributeError, OSError, ValueError):  # no such limit here (Windows)
        limited = False
    raise_limit = "raise the file-size limit (ulimit -f unlimited) or write a smaller output"
    if is_file_too_large(exc):
        _tell(f"{name}: error: a file grew past the file-size limit of this process{where}; {raise_limit}{then}")
        return 2
    if not is_disk_full(exc):
        return None
    also = "" if not limited else f" (or a file reached the file-size limit: {raise_limit})"
    _tell(f"{name}: error: no space left on the disk{where or ' being written to'}; free space there or write the "
          f"output to another disk{also}{then}")
    return 2


def _reserve_standard_fds() -> None:
    """Give a standard descriptor closed at start (``2>&-``, a daemon's bare environment) /dev/null: the next file
    opened took its number, so the run folder's lock file sat at fd 2 (battery 23a), and what native code or a
    child process writes to stderr (a library's C++ warning, a crash report) would land in the file the run is
    writing. Python's own stream stays closed (None), as the user asked."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _printable_stdout() -> None:
    """Print what the console's encoding cannot show as escapes, as Python does on stderr: a path or generated text
    with 'ü' under an ASCII console (PYTHONIOENCODING=ascii, a cp1252 console and CJK text) was a
    UnicodeEncodeError traceback after the work was done."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    errors = getattr(sys.stdout, "errors", None) or "strict"
    if reconfigure is not None and errors in ("strict", "surrogateescape"):
        if errors == "surrogateescape":  # an ASCII locale without UTF-8 mode (battery 14b: generated text with
            codecs.register_error(_BYTES_OR_ESCAPES, _bytes_or_escapes)  # a 'ü' was a traceback there)
        try:
            reconfigure(errors="backslashreplace" if errors == "strict" else _BYTES_OR_ESCAPES)
        except (ValueError, OSError):  # a closed or detached stream: nothing will be printed to it anyway
            pass


def stdout_json(value: Any, **kwargs: Any) -> str:
    """``value`` as JSON text for stdout: its characters as they are where stdout's encoding has them, JSON's own
    \\u escapes where it has not. The escapes :func:`_printable_stdout` puts in place of a character the console
    cannot show (\\xab, \\U0001f600) are no JSON: ``PYTHONIOENCODING=ascii longrope generate --json`` printed text
    with a '«' that json.load refused ('Invalid \\escape', battery 28a)."""
    import json

    text = json.dumps(value, ensure_ascii=False, **kwargs)
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return json.dumps(value, **kwargs)
    return text


_BYTES_OR_ESCAPES = "longrope.bytes-or-escapes"


def _bytes_or_escapes(error: UnicodeError) -> tuple[bytes, int]:
    """surrogateescape's bytes back for a file name's undecodable bytes, backslashreplace's escapes for the rest."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    out = bytearray()
    for ch in error.object[error.start:error.end]:
        code = ord(ch)
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else ch.encode("ascii", "backslashreplace")
    return bytes(out), error.end


def main(argv: list[str] | None = None, *, parser: argparse.ArgumentParser | None = None) -> int:
    """``longrope ARGV``; with ``parser`` (from :func:`run_parser`), that program's command line, with the same
    one-line errors named by its prog. Ctrl-C is one line from the first instant: while the parser was built (the
    run modules imported) it was a 40-line KeyboardInterrupt traceback (battery 11a)."""
    _reserve_standard_fds()
    _printable_stdout()
    if argv is None:  # the process's own command line (not a caller's: a test runner keeps its Ctrl-C)
        _ctrl_c_once()
        from longrope.train.launch import launcher_pid

        launcher_pid()  # its parent, now: a launcher killed later is told by finetune (train.loop)
    streams = sys.stdout, sys.stderr
    # a stream closed at start (`>&-`) is None: print() then writes nothing, as before
    sys.stdout = _Stream(sys.stdout, results=True) if sys.stdout is not None else None
    sys.stderr = _Stream(sys.stderr, results=False) if sys.stderr is not None else None
    try:
        return _main(argv, parser)
    except KeyboardInterrupt as exc:
        return _interrupted(parser.prog if parser is not None else "longrope", exc)
    finally:
        sys.stdout, sys.stderr = streams
        if argv is None:
            _ctrl_c_once(over=True)


def _ctrl_c_once(*, over: bool = False) -> None:
    """Ctrl-C interrupts the command once, as Python's KeyboardInterrupt (one line, status 130, the run's clean-up
    done); a second one, pressed while that clean-up or the interpreter's exit runs (libraries' atexit hooks:
    torch's imports tabulate to report compile times, a second on a busy machine), ends the process as the signal
    does (status 130, what it leaves is what a kill leaves, which --resume takes). Python's own handler raised
    there too, inside a garbage-collected progress bar or an atexit hook: 'Exception ignored in ...' and a 25-line
    KeyboardInterrupt traceback (battery 17). ``over``: the command is over, so the next Ctrl-C is the second.
    A handler someone else installed is left alone.

    SIGTERM (``kill``, a job scheduler's time limit, ``systemctl stop``) and SIGHUP (the terminal closed) are
    answered the same way (:class:`_Terminated`, a KeyboardInterrupt): they ended the process where it stood,
    silently, skipping every clean-up a Ctrl-C runs (a pipeline's stage stayed 'running' in its manifest, a run
    folder's set-up stub and an evaluation's hidden partial folder stayed behind, battery 18). A disposition set to
    ignore them (``nohup``) is kept."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.default_int_handler and not over:
        signal.signal(signal.SIGINT, _first_ctrl_c)
    elif handler in (signal.default_int_handler, _first_ctrl_c):
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    for signum in _TERMINATING:
        handler = signal.getsignal(signum)
        if handler is signal.SIG_DFL and not over:
            signal.signal(signum, _first_termination)
        elif handler is _first_termination and over:
            signal.signal(signum, signal.SIG_DFL)


def _first_ctrl_c(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise KeyboardInterrupt


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP received: a KeyboardInterrupt to every clean-up on the way out (they treat an interrupt
    alike, however it came), told as the signal it was, status 128 + its number (as the shell reports a process
    the signal ended)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _signal_numbers() -> tuple[int, ...]:
    import signal

    return tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


_TERMINATING = _signal_numbers()


def _first_termination(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process as the signal does
    raise _Terminated(signum)


def _interrupted(name: str, exc: KeyboardInterrupt, args: argparse.Namespace | None = None) -> int:
    """The one line for a command interrupted (Ctrl-C) or terminated (SIGTERM, SIGHUP), and its status; a run that
    --resume continues says so (its folder keeps the work done: checkpoints, finished stages)."""
    import signal

    if isinstance(exc, _Terminated):
        line, status = f"{name}: terminated ({signal.Signals(exc.signum).name})", 128 + exc.signum
    else:
        line, status = f"{name}: interrupted", 130
    _tell(line + _how_to_continue(args))
    return status


def _how_to_continue(args: argparse.Namespace | None) -> str:
    """What a resumable run that stopped before its end (interrupted, or a write the disk or the file-size limit
    refused) says of its work: '; run the same command with --resume to continue', or that nothing was written yet;
    '' for a command that is no resumable run."""
    from dataclasses import fields

    spec = getattr(args, "_spec", None)
    if spec is None or not any(f.name == "resume" for f in fields(spec.config)):
        return ""
    from longrope.runs.folder import holds_run

    output = getattr(args, spec.output_field, None) or getattr(args, "output", None)
    if output is not None and not holds_run(output, spec.command):  # stopped in its set-up: --resume would
        return "; nothing was written yet: run the same command again"  # would answer 'nothing to resume'
    if getattr(args, "_rerun", False):
        return f"; 'longrope {spec.command} --config {output} --resume' continues it"
    return "; run the same command with --resume to continue"


class _StdoutRefused(OSError):
    """stdout could not take a write (not a closed pipe): what was lost is the printed result, not a file."""


class _Stream:
    """stdout / stderr while a command runs (battery 14b). stderr carries progress bars, warnings and the one-line
    errors, so a write it cannot take (a full disk or an I/O error under ``2>log``) is dropped: it was raised inside
    whatever drew it (a search or evaluation with ``2>/dev/full`` died "cannot load 'tiny': No space left on
    device") and a refused input exited 1 instead of 2. stdout's failure is told apart from an output file's
    (:class:`_StdoutRefused`): a finished run was worded "write the output to another disk". A closed pipe raises
    as it is (``| head``: 141)."""

    def __init__(self, stream: Any, *, results: bool) -> None:
        self._stream, self._results = stream, results

    def _refused(self, e: OSError) -> None:
        if isinstance(e, BrokenPipeError):
            raise e
        if self._results:
            raise _StdoutRefused(e.errno, e.strerror) from None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            self._refused(e)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self._refused(e)

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding ... as the stream has them
        return getattr(self._stream, name)


def _told_os_error(name: str, exc: OSError, then: str = "") -> int:
    """The one line for an OSError that reached the command line (a file the user named: unreadable, read-only, a
    full disk, ...), and the exit status; ``then``: :func:`_write_refused`'s (out of file descriptors, the run folder's
    record could not be opened to tell whether it holds work)."""
    if isinstance(exc, BrokenPipeError) and _stdout_gone():  # `| head` stopped reading: no mistake of theirs
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 141  # as a process SIGPIPE ends (Python ignores the signal), not 2 "error: Broken pipe"
    if isinstance(exc, _StdoutRefused):
        _tell(f"{name}: error: cannot print to stdout ({exc.strerror}): the printed result is lost (files and run "
              "folders are written before anything is printed); redirect stdout where it can be written")
        return 2
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if (refused := _write_refused(name, exc, where, then)) is not None:
        return refused
    if exc.errno in (errno.EMFILE, errno.ENFILE):  # the limit, not the file named, is what to change
        _tell(f"{name}: error: too many open files{where}: the limit of open files is too low (ulimit -n); "
              "raise it (ulimit -n 4096) and run again (--resume continues a resumable run)")
        return 2
    from longrope.io import os_error_fix

    fix = os_error_fix(exc, _LAST_FIXES.get(exc.errno))
    _tell(f"{name}: error: {exc.strerror or exc}{where}{f'; {fix}' if fix else ''}")
    return 2


#: the fix of an OS error that reached the command line without a reader's own words: a shard file or a run folder
#: this user may not read was 'Permission denied (PATH)', no word of what to do (battery 21)
_LAST_FIXES = {
    errno.EACCES: "this user may not use that path: change its permissions (chmod) or owner, or give another path",
    errno.EPERM: "this user may not use that path: change its permissions (chmod) or owner, or give another path",
    errno.EROFS: "the file system there is read-only: give a path on a writable one",
}


def _main(argv: list[str] | None, parser: argparse.ArgumentParser | None) -> int:
    from longrope.runs import MOVED

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        os.getcwd()
    except FileNotFoundError:  # its folder was removed under the shell: torch's loader failed 'Intel oneMKL FATAL
        # ERROR: Cannot load libtorch_cpu.so', a command's own check said a bare 'No such file or directory' (battery 17)
        _tell(f"{parser.prog if parser is not None else 'longrope'}: error: the current folder no longer exists "
              "(it was removed or moved away); cd to an existing folder and run the command again")
        return 2
    if parser is None and argv and argv[0] in MOVED:
        _tell(f"longrope {argv[0]}: error: {MOVED[argv[0]]}")
        return 2
    parser = parser or build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except _ArgError as exc:
        _tell(str(exc))
        return 2
    if extra:  # named under the command they were given to, whose --help lists what it takes
        prog = " ".join(x for x in (parser.prog, getattr(args, "command", None), getattr(args, "kind", None)) if x)
        _tell(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)")
        return 2
    if getattr(args, "version", False):
        from longrope import __version__

        try:  # `longrope --version | true`: a BrokenPipeError traceback, status 1 (battery 28a)
            print(__version__, flush=True)
        except OSError as exc:
            return _told_os_error(parser.prog, exc)
        return 0
    is_run = hasattr(args, "_spec") or getattr(args, "_rerun", False)
    if not is_run and not getattr(args, "_tool", None):
        parser.print_help()
        return 2
    from longrope.errors import ConfigError, UserError

    name = " ".join(x for x in (parser.prog, getattr(args, "command", None), getattr(args, "kind", None)) if x)
    if (small := _address_space_too_small()) is not None:
        _tell(f"{name}: error: {small}")
        return 2
    from longrope.train.launch import launch_problem

    if (stray := launch_problem()) is not None:  # told by every process: the variables that pick the teller are wrong
        _tell(f"{name}: error: {stray}", every_process=True)
        return 2
    try:
        return int((_run_command(args) if is_run else _run_tool(args)) or 0)
    except ConfigError as exc:
        from longrope.options import field_flags

        spec = getattr(args, "_spec", None)
        config = spec.config if spec is not None else getattr(getattr(args, "_tool", None), "CONFIG", None)
        flags = field_flags(config) if config is not None else {}
        where = ""
        if getattr(args, "_rerun", False):  # rerun takes no flags: the recorded configuration is what to change
            where = (f" (in the configuration recorded in {args.run_dir}: run '{parser.prog} {spec.command if spec else args.command}"
                     f" --config {args.run_dir}' with the flag changed instead)")
        elif getattr(args, "config", None) and not any(hasattr(args, f) for f in exc.fields):  # not typed now
            where = f" (the value recorded in {args.config}: give the flag to change it)"
        _tell(f"{name}: error: {exc.render(lambda f: flags.get(f, f))}{where}")
        return 2
    except UserError as exc:
        _tell(f"{name}: error: {exc}", every_process=exc.every_process)
        return 2
    except OSError as exc:  # a file the user named: unreadable, read-only, disk full ...
        return _told_os_error(name, exc, _how_to_continue(args))
    except KeyboardInterrupt as exc:
        return _interrupted(name, exc, args)
    except (MemoryError, RuntimeError, ImportError) as exc:  # an allocation failure outside the evaluations' guard
        if isinstance(exc, ImportError) and not _MAP_FAILED.search(str(exc)):
            raise
        if isinstance(exc, RuntimeError) and (loop := _SYMLINK_LOOP.fullmatch(str(exc))):
            from longrope.io import os_error_fix

            _tell(f"{name}: error: {os.strerror(errno.ELOOP)} ({loop.group(1)}); "
                  f"{os_error_fix(OSError(errno.ELOOP, ''))}")
            return 2
        if (refused := _write_refused(name, exc, then=_how_to_continue(args))) is not None:
            return refused
        if not isinstance(exc, (MemoryError, ImportError)):  # (importing torch to ask, after a MemoryError, raised another one)
            from longrope.evaluate.memory import is_out_of_memory

            if not is_out_of_memory(exc):
                raise
        if _raised_by_an_import(exc):  # not a size the user chose: the advice below would not help (battery 17)
            _tell(f"{name}: error: out of memory while loading its libraries (torch, transformers): this process's "
                  "memory limit is too low for them (ulimit -v); raise it or run without one")
            return 2
        from longrope.evaluate.memory import limit_advice  # a limit above the libraries' floor (battery 21a)

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        _tell(f"{name}: error: out of memory ({first}); use smaller sizes (shorter sequences, fewer "
              f"samples or a smaller batch), a smaller dtype, or a device with more memory{limit_advice()}")
        return 2
    except Exception as exc:  # a library's own error for a full disk (safetensors' save: a traceback before)
        if (refused := _write_refused(name, exc, then=_how_to_continue(args))) is None:
            raise
        return refused
