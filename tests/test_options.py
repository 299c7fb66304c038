"""The one reading of command-line text into config fields (:mod:`longrope.options`)."""

from longrope.cli import build_parser
from longrope.options import user_path_text


def test_a_tilde_the_shell_left_in_a_path_option_is_read_as_the_home_folder(monkeypatch, tmp_path):
    """Only --model read '~': 'baseline -o ~/f.json' (the shell expands it) wrote into the home folder, but
    '--output=~/f.json', '-o "~/f.json"', 'eval --factors=~/f.json' and 'tokenize --input search=~/books' named a
    folder called '~' in the current one (the lead's open item of battery 28a). Every path field now reads it as
    the shell would; other text (a prompt, a hub id, a role without '~') is left as typed."""
    monkeypatch.setenv("HOME", str(tmp_path))
    parser = build_parser()
    args = parser.parse_args(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512",
                              "--output=~/f.json"])
    assert args.output == str(tmp_path / "f.json")
    args = parser.parse_args(["eval", "ppl", "--model", "~/m", "--lengths", "512", "-o", "~/run",
                              "--factors", "~/a.json", "none", "--data", "~/shards"])
    assert (args.model, args.output, args.data) == (str(tmp_path / "m"), str(tmp_path / "run"),
                                                     str(tmp_path / "shards"))
    assert args.factors == [str(tmp_path / "a.json"), "none"]
    args = parser.parse_args(["tokenize", "--tokenizer", "tiny", "--input", "search=~/books", "~/more", "org/name",
                              "-o", "out"])
    assert args.input == [f"search={tmp_path / 'books'}", str(tmp_path / "more"), "org/name"]
    args = parser.parse_args(["finetune", "--model", "tiny", "--factors", "f.json", "--data", "d", "-o", "o",
                              "--exclude=~/a,~/b", "--steps", "1", "--seq-len", "64"])
    assert args.exclude == (str(tmp_path / "a"), str(tmp_path / "b"))
    args = parser.parse_args(["generate", "--model", "tiny", "--factors", "f.json", "--prompt", "~/x",
                              "--max-new-tokens", "1"])
    assert args.prompt == "~/x"
    args = parser.parse_args(["rerun", "~/old", "-o", "~/new"])
    assert (args.run_dir, args.output) == (str(tmp_path / "old"), str(tmp_path / "new"))


def test_user_path_text_leaves_unknown_users_and_inner_tildes():
    assert user_path_text("~nosuchuser_xyz/m") == "~nosuchuser_xyz/m"
    assert user_path_text("a/~/b") == "a/~/b"
    assert user_path_text("tiny") == "tiny"


def _option_actions(parser):
    """Every option and positional of ``parser`` and of its subcommands, as ``(command, action)``."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for where, a in _option_actions(sub):
                    yield f"{name} {where}".strip(), a
        elif action.dest not in ("help", "version"):
            yield "", action


def test_every_option_naming_a_file_folder_or_model_reads_a_tilde(monkeypatch, tmp_path):
    """A new path option that forgets path=True (or an argparse-level one such as --config RUN_DIR, which read
    '~/ppl' as a folder called '~', review of battery 29) would read '~' literally again: every option of longrope
    and of the repository's tool whose metavar names a file, folder or model reads it as the home folder."""
    from longrope.cli import run_parser
    from tools.train_tiny.run import PROGRAM, SPEC

    monkeypatch.setenv("HOME", str(tmp_path))
    pathlike = {"M", "F", "DIR", "DIR,DIR", "OUT", "FILE", "RUN_DIR", "NEW_DIR", "PATH", "SRC", "CKPT"}
    seen = 0
    for parser in (build_parser(), run_parser(PROGRAM, SPEC)):
        for command, action in _option_actions(parser):
            if action.metavar in pathlike or action.dest in ("model", "output", "data", "config", "run_dir"):
                seen += 1
                value = action.type("~/x") if action.type else "~/x"
                values = value if isinstance(value, tuple) else (value,)
                assert all(str(v) == str(tmp_path / "x") for v in values), (command, action.option_strings or action.dest)
    assert seen > 40


def test_a_nested_configs_declared_default_text_is_shown_where_its_command_keeps_that_default(capsys):
    """search's --patience (None: the strategy's stall rule) showed no default at all; demo's own 250 stays."""
    import pytest

    parser = build_parser()
    shown = {}
    for command in ("search", "demo"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        shown[command] = " ".join(capsys.readouterr().out.split())
    assert "(the stall rule) (default paper: never; ours: max(3·(N1+N2), budget/8))" in shown["search"]
    assert "(the stall rule) (default 250)" in shown["demo"]
