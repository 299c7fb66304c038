"""The one reading of command-line text into config fields (:mod:`longrope.options`)."""

import dataclasses

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


def test_every_field_named_like_a_path_is_marked_as_one():
    """A new file or folder field that forgets path=True would read '~' literally again: the fields whose metavar
    names a file, folder or model are all marked."""
    from longrope.runs.demo import DemoConfig
    from longrope.runs.evaluate import PasskeyConfig, PplConfig
    from longrope.runs.pipeline import PipelineConfig
    from longrope.runs.ruler import RulerConfig
    from longrope.runs.search import SearchConfig
    from longrope.tools import BaselineConfig, ExportConfig, GenerateConfig, InspectConfig, TokenizeConfig
    from longrope.train.config import FinetuneConfig

    pathlike = {"M", "F", "DIR", "DIR,DIR", "OUT", "FILE", "RUN_DIR", "PATH", "SRC"}
    for cls in (DemoConfig, PplConfig, PasskeyConfig, RulerConfig, PipelineConfig, SearchConfig, BaselineConfig,
                ExportConfig, GenerateConfig, InspectConfig, TokenizeConfig, FinetuneConfig):
        for f in dataclasses.fields(cls):
            if f.name in ("model", "output", "data") or f.metadata.get("metavar") in pathlike:
                assert f.metadata.get("path"), (cls.__name__, f.name)
