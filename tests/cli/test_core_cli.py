"""Smoke tests of ``longrope inspect``, ``baseline`` and ``export`` on a tiny model in a tmp folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from longrope.cli import main


def _run(capsys, *argv):
    capsys.readouterr()  # drop what fixtures printed (progress bars)
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_core_commands():
    proc = subprocess.run([sys.executable, "-m", "longrope", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for cmd in ("inspect", "baseline", "export"):
        assert cmd in proc.stdout


def test_every_commands_help_is_plain_text(capsys):
    """inspect, baseline, export and generate printed their module docstrings' reStructuredText markup as --help
    (``--load``, ``factors.json``) where every other command's help is plain (battery 20c)."""
    import pytest

    from longrope.cli import build_parser

    parser = build_parser()
    commands = [a for a in parser._subparsers._group_actions[0].choices if a not in ("eval", "rerun")]
    for argv in [[c] for c in commands] + [["eval", k] for k in ("ppl", "passkey", "ruler")]:
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--help"])
        out = capsys.readouterr().out
        assert out.startswith("usage:") and "``" not in out, argv


def test_inspect_prints_rope_facts(capsys, tiny_model_dir):
    code, out, _ = _run(capsys, "inspect", "--model", str(tiny_model_dir))
    assert code == 0
    info = json.loads(out)
    assert info["supported"] is True and info["family"] == "Llama"
    assert (info["rotary_dim"], info["rope_theta"], info["original_max_position_embeddings"]) == (16, 10000.0, 32)


def test_inspect_load_checks_structure(capsys, tiny_model_dir, tmp_path):
    code, out, _ = _run(capsys, "inspect", "--model", str(tiny_model_dir), "--load", "-o", str(tmp_path / "i.json"))
    assert code == 0 and json.loads(out)["supported"] is True
    assert json.loads((tmp_path / "i.json").read_text())["rotary_dim"] == 16


def test_inspect_load_prints_no_library_progress_bar(capsys):
    """inspect has no bars of its own and no --quiet: transformers' 'Loading weights' bar was noise on stderr
    before its JSON, as it was in generate (battery 6)."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    try:
        code, out, err = _run(capsys, "inspect", "--model", "tiny", "--load")
    finally:
        hf_logging.enable_progress_bar()
    assert code == 0 and json.loads(out)["supported"] is True and err == "", err


def test_inspect_unsupported_model_says_why(capsys, tmp_path):
    import transformers

    transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64).save_pretrained(tmp_path / "gpt2")
    code, out, _ = _run(capsys, "inspect", "--model", str(tmp_path / "gpt2"))
    info = json.loads(out)
    assert code == 0 and info["supported"] is False
    assert "gpt2" in info["reason"] and "llama" in info["reason"]


def test_baseline_pi_and_yarn(capsys, tiny_model_dir, tmp_path):
    from longrope.rope import FactorSet

    code, out, _ = _run(capsys, "baseline", "--model", str(tiny_model_dir), "--method", "pi",
                        "--target-length", "128", "--start-tokens", "4", "-o", str(tmp_path / "pi.json"))
    assert code == 0
    fs = FactorSet.load(tmp_path / "pi.json")
    np.testing.assert_array_equal(fs.long_factor, np.full(8, 4.0))
    assert (fs.start_tokens, fs.original_max_position_embeddings, fs.rope_theta) == (4, 32, 10000.0)
    assert "longrope baseline" in fs.provenance["command"]
    assert json.loads(out)["scale"] == 4.0

    code, _, _ = _run(capsys, "baseline", "--model", str(tiny_model_dir), "--method", "yarn", "--target-length",
                      "128", "--beta-fast", "16", "--attention-factor", "1.2", "-o", str(tmp_path / "y.json"))
    assert code == 0
    fs = FactorSet.load(tmp_path / "y.json")
    assert fs.method == "yarn" and fs.resolved_attention_factor() == 1.2
    assert fs.long_factor[0] == pytest.approx(1.0) and fs.long_factor[-1] == pytest.approx(4.0)


def test_baseline_rejects_options_of_other_methods(capsys, tiny_model_dir, tmp_path):
    code, _, err = _run(capsys, "baseline", "--model", str(tiny_model_dir), "--method", "pi",
                        "--target-length", "128", "--beta-fast", "16", "-o", str(tmp_path / "f.json"))
    assert code == 2 and err.count("\n") == 1 and "--beta-fast" in err
    assert not (tmp_path / "f.json").exists()


def test_export_roundtrip_through_the_cli(capsys, tiny_model_dir, tmp_path):
    import transformers

    assert _run(capsys, "baseline", "--model", str(tiny_model_dir), "--method", "yarn",
                "--target-length", "128", "-o", str(tmp_path / "f.json"))[0] == 0
    code, out, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(tmp_path / "f.json"),
                          "-o", str(tmp_path / "exported"))
    assert code == 0, err
    assert json.loads(out)["output"] == str(tmp_path / "exported")
    config = transformers.AutoConfig.from_pretrained(tmp_path / "exported")
    assert config.rope_parameters["rope_type"] == "longrope" and config.max_position_embeddings == 128


def test_export_bad_factor_path_is_one_line_exit_2(capsys, tiny_model_dir, tmp_path):
    code, out, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors",
                          str(tmp_path / "missing.json"), "-o", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("longrope export: error:") and "missing.json" in err


def test_missing_model_is_one_line_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "inspect", "--model", str(tmp_path / "no-such-model"))
    assert code == 2 and err.count("\n") == 1 and "no such model" in err


def test_export_keeps_the_stored_dtype(capsys, build_tiny_model, tmp_path):
    import torch

    build_tiny_model("llama").to(torch.float16).save_pretrained(tmp_path / "fp16")
    assert _run(capsys, "baseline", "--model", str(tmp_path / "fp16"), "--method", "ntk",
                "--target-length", "64", "-o", str(tmp_path / "f.json"))[0] == 0
    code, _, err = _run(capsys, "export", "--model", str(tmp_path / "fp16"), "--factors", str(tmp_path / "f.json"),
                        "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float16"


@pytest.mark.parametrize("command", [["search", "--data", "shards", "--target-length", "512"],
                                     ["finetune", "--factors", "f.json", "--data", "shards"]])
def test_quiet_turns_off_transformers_progress_bars_too(monkeypatch, tmp_path, command):
    """--quiet means no progress bars: transformers' own ("Loading weights", "Writing model shards") included,
    for every command that has the flag, not only the eval commands."""
    from dataclasses import replace

    from transformers.utils import logging as hf_logging

    import longrope.runs as runs

    seen: list[bool] = []
    real = runs.get_run

    def get_run(name):
        spec = real(name)
        if name != command[0]:
            return spec
        return replace(spec, run=lambda config, **_: seen.append(hf_logging.is_progress_bar_enabled()) or {},
                       render=lambda result: "")

    monkeypatch.setattr(runs, "get_run", get_run)
    was = hf_logging.is_progress_bar_enabled()
    try:
        argv = [*command, "--model", "tiny", "-o", str(tmp_path / "out")]
        hf_logging.enable_progress_bar()
        assert main([*argv, "--quiet"]) == 0 and seen == [False]
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


@pytest.mark.parametrize("argv, line", [
    (["baseline", "--model", "tiny", "--method", "yarn", "--target-length", "1000000000000x", "-o", "f.json"],
     "longrope baseline: error: --target-length: a context ratio is a number from 1 to 16,777,216 before 'x' "
     "(e.g. 8x), got '1000000000000x' (see longrope baseline --help)"),
    (["eval", "ppl", "--model", "tiny", "--lengths", "2k,12q", "--data", "d", "-o", "o"],
     "longrope eval ppl: error: --lengths: a length is a whole number of tokens (e.g. 2048, 4k or 8x), got '12q' "
     "(see longrope eval ppl --help)"),
    (["eval", "passkey", "--model", "tiny", "--lengths", "0.5k,512", "-o", "o"],  # was "got '0.5'" (battery 11a)
     "longrope eval passkey: error: --lengths: a length is a whole number of tokens (e.g. 2048, 4k or 8x), got "
     "'0.5k' (see longrope eval passkey --help)"),
])
def test_a_bad_length_is_named_once_and_said_as_it_is(capsys, tmp_path, argv, line):
    """argparse's own "argument --lengths:" prefix repeated the flag our parser names (battery 4), and a ratio
    too large was called "not at least 1"; a length in k was echoed without its k (battery 11a)."""
    code, _, err = _run(capsys, *argv)
    assert code == 2 and err.strip() == line


def test_a_reader_that_stops_reading_ends_the_command_quietly(monkeypatch, capsys):
    """``longrope inspect | head -1``: the closed pipe is no mistake of the user's; it said "error: Broken pipe"
    with the bad-input status 2 (battery 5). Now: nothing on stderr, 141 as for a process SIGPIPE ends."""
    import os
    import sys

    from longrope.cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    stdout = os.fdopen(write_end, "w", buffering=1)  # a line reaches the pipe at once, as a terminal's would
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["inspect", "--model", "tiny"]) == 141
    finally:
        stdout.close()
    assert capsys.readouterr().err == ""


def test_export_quiet_hides_transformers_bars(capsys, tmp_path):
    """export had no --quiet: transformers' "Loading weights" bar was drawn on every export (battery 5)."""
    from transformers.utils import logging as hf_logging

    assert _run(capsys, "baseline", "--model", "tiny", "--method", "yarn", "--target-length", "2x",
                "-o", str(tmp_path / "f.json"))[0] == 0
    hf_logging.enable_progress_bar()
    try:
        code, out, err = _run(capsys, "export", "--model", "tiny", "--factors", str(tmp_path / "f.json"),
                              "-o", str(tmp_path / "out"), "--quiet")
        assert code == 0 and "Loading weights" not in err and json.loads(out)["format"] == "hf"
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])
def test_a_console_that_cannot_show_a_character_gets_an_escape_not_a_traceback(monkeypatch, tmp_path, errors):
    """battery 9a: PYTHONIOENCODING=ascii tokenize -o 'out ü' wrote the shards, then printed its summary line as a
    UnicodeEncodeError traceback (exit 1). Now the character is escaped, as Python does on stderr. Battery 14b: the
    same under an ASCII locale without UTF-8 mode (LC_ALL=C PYTHONUTF8=0: stdout's errors are surrogateescape;
    generate's text with a 'ü' was a traceback)."""
    import io

    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("some words of text", encoding="utf-8")
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors=errors, write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["tokenize", "--tokenizer", "tiny", "--input", str(tmp_path / "books"), "-o", str(tmp_path / "out ü"),
                 "--quiet"])
    assert code == 0 and b"out \\xfc" in raw.getvalue()


def test_ctrl_c_while_the_command_line_is_read_is_one_line(monkeypatch, capsys):
    """Ctrl-C in the first second (the parser being built imports every run module) was a 40-line
    KeyboardInterrupt traceback; after it, one line. Now one line and status 130 there too (battery 11a)."""
    import longrope.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["eval", "ppl", "--help"]) == 130
    assert capsys.readouterr().err == "longrope: interrupted\n"


def test_a_stderr_that_cannot_be_written_neither_ends_the_work_nor_changes_the_status(monkeypatch, tmp_path):
    """stderr on a full disk (``2>/dev/full``, a log on a full file system): the loading bar's write was raised
    inside the model load ("cannot load 'tiny': No space left on device") and a refused input exited 1, not 2,
    the one-line error being unwritable (battery 14b). A closed pipe still raises."""
    import errno
    import io

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stderr", Full())
    assert main(["inspect", "--model", str(tmp_path / "nope")]) == 2
    monkeypatch.setattr(sys, "stderr", None)  # closed at start (2>&-): Python's None, left alone
    assert main(["inspect", "--model", str(tmp_path / "nope")]) == 2
    monkeypatch.setattr(sys, "stderr", Full())

    def bar_then_work(args):
        print("progress 1/2", file=sys.stderr, flush=True)
        return 0

    import longrope.cli as cli

    monkeypatch.setattr(cli, "_run_tool", bar_then_work)
    out = tmp_path / "y.json"
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o", str(out)]) == 0
    assert isinstance(sys.stderr, Full)  # put back as it was


def test_a_stdout_that_cannot_be_written_is_told_apart_from_the_output(monkeypatch, capsys, tmp_path):
    """`baseline -o y.json >/dev/full` wrote y.json, then said "no space left on the disk being written to; free space
    there or write the output to another disk" - as if the output were lost (battery 14b). Now the line says that
    stdout failed and what was lost."""
    import errno
    import io

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    out = tmp_path / "y.json"
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot print to stdout (No space left on device)" in err and "another disk" not in err
    assert json.loads(out.read_text())["max_position_embeddings"] == 512


def _launched_as(monkeypatch, local_rank: str) -> None:
    """The variables a launcher sets in one process of a two-process group on one machine."""
    for name, value in (("LOCAL_RANK", local_rank), ("RANK", local_rank), ("WORLD_SIZE", "2"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("local_rank, told", [("0", 1), ("1", 0)])
def test_a_refusal_or_result_under_a_launcher_is_told_once_per_machine(tmp_path, monkeypatch, capsys, local_rank, told):
    """battery 15: under ``accelerate launch`` every process runs the same checks, and each printed the refusal
    (two processes: two lines, in two wordings for one folder). The machine's first process tells it; every
    process still exits 2."""
    _launched_as(monkeypatch, local_rank)
    for argv in (["finetune", "--bogus"],
                 ["finetune", "--model", "tiny", "--factors", str(tmp_path / "none.json"), "--data", str(tmp_path),
                  "-o", str(tmp_path / "ft")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len([ln for ln in err.splitlines() if "error:" in ln]) == told, err
        assert "Traceback" not in err
    if local_rank == "1":  # and a run's result, the same in every process, is printed once too
        import longrope.train

        class Done:
            def to_dict(self):
                return {"steps": 1, "tokens": 1, "final_loss": 1.0, "model_dir": str(tmp_path / "ft" / "model")}

        factors = tmp_path / "pi.json"
        assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o", str(factors)]) == 0
        capsys.readouterr()
        monkeypatch.setattr(longrope.train, "finetune", lambda config, log=None, on_checked=None: Done())
        assert main(["finetune", "--model", "tiny", "--factors", str(factors), "--data", str(tmp_path),
                     "-o", str(tmp_path / "ft")]) == 0
        assert capsys.readouterr().out == ""


def test_a_refusal_met_by_one_process_of_a_launched_group_is_told_once_by_it(tmp_path, monkeypatch, capsys):
    """battery 21c: a refusal met by LOCAL_RANK 1 alone (another CUDA_VISIBLE_DEVICES or file system in its
    environment) was never told: only LOCAL_RANK 0 spoke, and it, stopped by torchrun, said "terminated (SIGTERM);
    nothing was written yet: run the same command again". The group's first process to tell anything tells it,
    whatever its rank; what the others of that group would tell after it is not told again."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "group-a")
    argv = ["finetune", "--model", "tiny", "--factors", str(tmp_path / "none.json"), "--data", str(tmp_path),
            "-o", str(tmp_path / "ft")]
    import longrope.cli as cli

    for local_rank, told in (("1", 1), ("0", 0), ("1", 0)):
        monkeypatch.setattr(cli, "_TELLER", None)  # each a process of its own
        _launched_as(monkeypatch, local_rank)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len([ln for ln in err.splitlines() if "error:" in ln]) == told, (local_rank, err)
    monkeypatch.setattr(cli, "_TELLER", None)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "group-b")  # another launch: its own first teller, which tells all it has
    assert main(argv) == 2 and main(argv) == 2
    assert capsys.readouterr().err.count("none.json") == 2


@pytest.mark.parametrize("second_press", ["in_cleanup", "at_exit"])
def test_a_second_ctrl_c_ends_the_process_without_a_traceback(tmp_path, second_press):
    """A second Ctrl-C while the first one's clean-up ran (a progress bar's __del__) or while the interpreter exited
    (torch's atexit hook imports tabulate, ~1 s under load) printed 'Exception ignored in ...' and a 25-line
    KeyboardInterrupt traceback (battery 17). The first is one line and 130; the second ends the process as the
    signal does, printing nothing more."""
    import os
    import signal

    code = ("import atexit, os, signal, sys, time\n"
            # as from a terminal: a background job of a non-interactive shell (`make test &`) starts with SIGINT
            # ignored, which the command rightly keeps, and the presses did nothing
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "import longrope.cli as cli\n"
            "def press():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(2)\n"
            "class Bar:\n"
            "    def __del__(self):\n"
            "        press()\n"
            "def command(argv, parser):\n"
            "    bar = Bar()\n"
            "    try:\n"
            "        press()\n"
            "    finally:\n"
            f"        {'del bar' if second_press == 'in_cleanup' else 'atexit.register(press)'}\n"
            "cli._main = command\n"
            "sys.argv = ['longrope', 'search']\n"
            "raise SystemExit(cli.main())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.returncode == -signal.SIGINT
    assert proc.stderr in ("", "longrope: interrupted\n")


@pytest.mark.parametrize("failure", ["MemoryError()", "ImportError('libtorch_cpu.so: failed to map segment from shared "
                                                      "object')"])
def test_running_out_of_memory_while_the_libraries_load_is_one_line_about_the_limit(monkeypatch, capsys,
                                                                                      failure):
    """Under ``ulimit -v`` of 0.5-0.8 GB torch's import fails: a traceback (the handler imported torch to ask whether
    the MemoryError was one, and failed again; the loader's 'failed to map segment'), or 'use shorter sequences',
    advice for a size the user never chose (battery 17). Now one line naming the memory limit, status 2."""
    import longrope.cli as cli

    def loads_a_library(args):  # a module's body failing as it runs (compiled as a module is: '<module>')
        exec(compile(f"raise {failure}\n", "heavy_library.py", "exec"), {})

    monkeypatch.setattr(cli, "_run_tool", loads_a_library)
    assert cli.main(["inspect", "--model", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory while loading its libraries" in err[0] and "ulimit -v" in err[0], err


def test_a_current_folder_removed_under_the_shell_is_one_line(monkeypatch, capsys):
    """A shell whose folder was removed: torch's loader ended 'Intel oneMKL FATAL ERROR: Cannot load
    libtorch_cpu.so', eval ppl said a bare 'No such file or directory' (battery 17). Now one line naming it."""
    import os

    def gone():
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(os, "getcwd", gone)
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "1024", "-o", "/tmp/x.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["longrope: error: the current folder no longer exists (it was removed or moved away); cd to an "
                   "existing folder and run the command again"]


def _run_command(cwd, setup: str, body: str) -> subprocess.CompletedProcess:
    """``longrope search`` in a new Python process whose command is ``body`` (the lines of a function of ``argv,
    parser``), after ``setup`` (one line run first): what a signal does to a real process, outside pytest's."""
    import os

    code = ("import os, signal, sys, time\n"
            "import longrope.cli as cli\n"
            f"{setup}\n"
            "def command(argv, parser):\n"
            f"{body}"
            "cli._main = command\n"
            "sys.argv = ['longrope', 'search']\n"
            "raise SystemExit(cli.main())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=cwd)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_run_the_clean_up_and_say_so_in_one_line(tmp_path, signame):
    """SIGTERM (kill, a scheduler's time limit) or SIGHUP (the terminal closed) ended a command where it stood,
    silently, status 143/129, skipping every clean-up a Ctrl-C runs: an evaluation's hidden partial folder stayed,
    a pipeline's stage stayed 'running' (battery 18). Now it is answered as a Ctrl-C is: the clean-up runs, one line
    names the signal, and the status is the shell's for that signal (128 + its number)."""
    import signal

    # as a terminal's shell starts it: a test run under nohup would hand the process SIGHUP ignored, and an ignored
    # disposition is kept (the next test)
    proc = _run_command(tmp_path, f"signal.signal(signal.{signame}, signal.SIG_DFL)",
                        "    try:\n"
                        f"        os.kill(os.getpid(), signal.{signame})\n"
                        "        time.sleep(30)\n"
                        "    finally:\n"
                        "        open('cleaned-up', 'w').close()\n")
    assert proc.returncode == 128 + getattr(signal, signame), proc.stderr
    assert proc.stderr == f"longrope: terminated ({signame})\n"
    assert (tmp_path / "cleaned-up").exists()


def test_a_hangup_ignored_by_whoever_started_the_command_stays_ignored(tmp_path):
    """nohup (or a shell's trap '' HUP) starts a command with SIGHUP ignored so that it outlives its terminal; the
    signal handling above must not undo that."""

    proc = _run_command(tmp_path, "signal.signal(signal.SIGHUP, signal.SIG_IGN)",
                        "    os.kill(os.getpid(), signal.SIGHUP)\n"
                        "    time.sleep(0.2)\n"
                        "    open('finished', 'w').close()\n"
                        "    return 0\n")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "finished").exists()


def test_an_interrupted_resumable_run_says_that_resume_continues_it(capsys, tmp_path, monkeypatch):
    """A run that --resume continues says so when a signal or Ctrl-C stops it; a rerun names the folder it made; a
    staged run (nothing to resume) says only what stopped it. One stopped in its set-up, before its folder held a run
    (loading the model, importing lm-eval), said '--resume' too, which then answered 'nothing to resume' (battery 19)."""
    import argparse
    import json
    import signal

    import longrope.cli as cli
    from longrope.runs import get_run
    from longrope.runs.folder import RUN_FORMAT

    monkeypatch.chdir(tmp_path)
    for name in ("out", "again"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "command": "search",
                                                                 "config": {}}))
    args = argparse.Namespace(_spec=get_run("search"), output="out")
    assert cli._interrupted("longrope search", cli._Terminated(signal.SIGTERM), args) == 143
    rerun = argparse.Namespace(_spec=get_run("search"), output="again", _rerun=True)
    assert cli._interrupted("longrope rerun", KeyboardInterrupt(), rerun) == 130
    staged = argparse.Namespace(_spec=get_run("eval ppl"), output="out")
    assert cli._interrupted("longrope eval ppl", KeyboardInterrupt(), staged) == 130
    early = argparse.Namespace(_spec=get_run("search"), output="not-yet")
    assert cli._interrupted("longrope search", KeyboardInterrupt(), early) == 130
    early_rerun = argparse.Namespace(_spec=get_run("search"), output="not-yet", _rerun=True)
    assert cli._interrupted("longrope rerun", KeyboardInterrupt(), early_rerun) == 130
    assert capsys.readouterr().err.splitlines() == [
        "longrope search: terminated (SIGTERM); run the same command with --resume to continue",
        "longrope rerun: interrupted; 'longrope search --config again --resume' continues it",
        "longrope eval ppl: interrupted",
        "longrope search: interrupted; nothing was written yet: run the same command again",
        "longrope rerun: interrupted; nothing was written yet: run the same command again"]


def test_a_looping_link_as_a_path_is_one_line_not_pathlibs_runtime_error(monkeypatch, tmp_path, capsys):
    """search / eval ppl -o LOOP (a symbolic link that leads back to itself) ended in a 30-line traceback: pathlib's
    resolve() raises RuntimeError 'Symlink loop from ...' (Python < 3.13), not the OSError every other call gives
    (battery 18). Now one line naming the link and the fix, status 2."""
    from pathlib import Path

    import longrope.cli as cli

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")

    def resolves_its_output(args):
        Path(tmp_path / "a").resolve()  # raises on Python < 3.13; on later ones, what it raised there:
        raise RuntimeError(f"Symlink loop from '{tmp_path / 'a'}'")

    monkeypatch.setattr(cli, "_run_tool", resolves_its_output)
    assert cli.main(["inspect", "--model", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loops" in err[0] and str(tmp_path) in err[0], err


def test_an_abbreviated_option_is_refused_not_completed(capsys, tmp_path):
    """argparse completed prefixes: 'eval ppl --mod tiny --len 256 --sam 1 --fac y.json' ran as --model, --lengths,
    --samples, --factors, against the README's one spelling per setting (battery 20c). The documented --out alias
    is a spelling of its own and still read."""
    from longrope.cli import build_parser

    out = str(tmp_path / "x.json")
    code, _, err = _run(capsys, "baseline", "--mod", "tiny", "--method", "pi", "--target-length", "512", "-o", out)
    assert code == 2 and "unrecognized arguments: --mod tiny" in err
    args = build_parser().parse_args(["baseline", "--model", "tiny", "--method", "pi", "--out", out])
    assert args.output == out


def test_a_standard_descriptor_closed_at_start_is_not_taken_by_a_file_the_command_opens(tmp_path):
    """Under ``2>&-`` the first file a command opened took fd 2 (the run folder's lock file did, battery 23a), so
    stderr written by native code or a child process would land in it. Closed standard descriptors now hold
    /dev/null while the command runs."""
    import os

    code = ("import os, sys\n"
            "import longrope.cli as cli\n"
            "def command(argv, parser):\n"
            "    fd = os.open('opened', os.O_CREAT | os.O_WRONLY)\n"
            "    os.write(2, b'native stderr')\n"
            "    os.close(fd)\n"
            "    with open('fd', 'w') as f:\n"
            "        f.write(str(fd))\n"
            "    return 0\n"
            "cli._main = command\n"
            "raise SystemExit(cli.main([]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "$CODE" 1>&- 2>&- 0<&-'], env={**env, "CODE": code},
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0
    assert int((tmp_path / "fd").read_text()) > 2 and (tmp_path / "opened").read_bytes() == b""


def _command_parsers(parser, prefix=()):
    """Every command's parser (eval's kinds included), keyed by the words that name it."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = dict(_command_parsers(sub, (*prefix, name)))
                yield from nested.items() if nested else [((*prefix, name), sub)]


def test_every_command_with_an_output_reads_all_three_spellings_the_readme_gives():
    """README "The commands": the output is -o/--output and --out is still read, in every command; search, eval,
    finetune, pipeline and rerun refused --out ("unrecognized arguments") (battery 26b)."""
    from longrope.cli import build_parser

    commands = dict(_command_parsers(build_parser()))
    with_output = {words: p for words, p in commands.items()
                   if any("--output" in a.option_strings for a in p._actions)}
    assert {("search",), ("eval", "ppl"), ("eval", "ruler"), ("finetune",), ("pipeline",), ("rerun",),
            ("export",), ("baseline",)} <= set(with_output)
    for words, p in with_output.items():
        for flag in ("-o", "--output", "--out"):
            args, extra = p.parse_known_args([flag, "somewhere"] + (["RUN"] if words == ("rerun",) else []))
            assert (args.output, extra) == ("somewhere", []), (words, flag)


def test_the_shipped_documents_the_help_examples_name_are_there():
    """README: `longrope COMMAND --help` shows a runnable example. search's tokenized
    `search=corpus/search heldout=corpus/heldout`, folders no checkout or install has (the shipped corpus is
    src/longrope/embedded/assets/corpus/) (battery 26b)."""
    import re
    from pathlib import Path

    from longrope.cli import build_parser

    root = Path(__file__).resolve().parents[2]
    examples = "\n".join(p.epilog or "" for _, p in _command_parsers(build_parser()))
    named = re.findall(r"(?:search|heldout|train)=(\S*corpus\S*)", examples)
    assert named, "no example tokenizes the shipped corpus"
    assert [p for p in named if not (root / p).is_dir()] == []


def test_version_to_a_stdout_that_cannot_take_it_is_one_line(monkeypatch, capsys):
    """battery 28a: `longrope --version | true` (or > /dev/full) was a BrokenPipeError / OSError traceback, status 1,
    where every command's printed result is one line (or 141 for a pipe nobody reads)."""
    import errno
    import io

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    code = main(["--version"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot print to stdout" in err, err


def test_a_help_examples_resume_repeats_the_settings_of_the_run_it_continues():
    """battery 32a: search's examples started a run with --iterations 10 and resumed it without, which a resume
    refuses (config.knobs.iterations: 10 -> 40); the run itself needed more search windows than the shipped
    corpus's three search books give one each (--windows-per-doc 4)."""
    import shlex

    from longrope.cli import build_parser

    parser = build_parser()
    checked = 0
    for words, p in _command_parsers(parser):
        lines = (p.epilog or "").replace("\\\n", " ").splitlines()
        runs = [shlex.split(line.strip())[1:] for line in lines if line.strip().startswith(f"longrope {' '.join(words)} ")]
        for argv in runs:
            if "--resume" not in argv:
                continue
            fresh = [a for a in argv if a != "--resume"]
            assert fresh in runs, f"{' '.join(words)}: resumes {' '.join(fresh)}, which no example starts"
            checked += 1
    assert checked >= 2  # search's and finetune's
