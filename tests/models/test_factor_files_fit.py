"""``load_factors_for`` / ``check_fits``: the one judge of "does this factor set fit this model", and
every command that takes ``--factors`` asks it before a single weight is read.

The embedded tiny model: rotary dim 64 (32 factors), rope_theta 10000, trained at L = 256.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from longrope.cli import main
from longrope.errors import UserError


@pytest.fixture(scope="module")
def info():
    from longrope.models import read_rope_info

    return read_rope_info("tiny")


@pytest.fixture(scope="module")
def files(tmp_path_factory, info):
    """Factor files that do not fit tiny, one per way of not fitting, and one that does."""
    from longrope.rope import make_baseline

    root = tmp_path_factory.mktemp("factors")
    good = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                         original_length=info.original_max_position_embeddings, target_length=1024).to_dict()
    out = {"good": good}
    out["theta"] = {**good, "rope_theta": 500000.0}
    out["dim"] = {**good, "long_factor": good["long_factor"][:8], "short_factor": good["short_factor"][:8],
                  "rotary_dim": 16}
    out["cut"] = {**good, "long_factor": good["long_factor"][:10]}  # rotary_dim 64 still in the file
    out["other_L"] = {**good, "original_max_position_embeddings": 8192, "max_position_embeddings": 32768}
    paths = {}
    for name, d in out.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(d))
    paths["malformed"] = root / "malformed.json"
    paths["malformed"].write_text('{"long_factor": [1, 2,')
    paths["csv"] = root / "ref.csv"
    paths["csv"].write_text("".join(f"{x!r}\n" for x in good["long_factor"]))
    return paths


def _load(path, info, **kw):
    from longrope.models.factor_files import load_factors_for

    return load_factors_for(path, info, model="tiny", **kw)


def test_a_fitting_file_loads(files, info):
    fs = _load(files["good"], info)
    assert fs.rotary_dim == 64 and fs.original_max_position_embeddings == 256


def test_wrong_rope_theta_names_the_file_and_the_fix(files, info):
    with pytest.raises(UserError) as e:
        _load(files["theta"], info)
    msg = str(e.value)
    assert str(files["theta"]) in msg and "rope_theta=500000" in msg and "10000" in msg
    assert "longrope baseline --model tiny" in msg


def test_wrong_rotary_dim_names_the_file_and_the_fix(files, info):
    with pytest.raises(UserError) as e:
        _load(files["dim"], info)
    msg = str(e.value)
    assert str(files["dim"]) in msg and "long_factor has 8 values" in msg and "rotary dim is 64 (needs 32)" in msg
    assert "longrope baseline --model tiny" in msg


def test_a_cut_list_is_the_one_blamed(files, info):
    with pytest.raises(UserError, match="long_factor has 10 values but the model's rotary dim is 64") as e:
        _load(files["cut"], info)
    assert "short_factor" not in str(e.value)


def test_another_models_original_length_is_refused_unless_asked_for(files, info):
    with pytest.raises(UserError) as e:
        _load(files["other_L"], info)
    msg = str(e.value)
    assert "L=8192" in msg and "L=256" in msg and "--original-length 8192" in msg and "longrope baseline" in msg
    # the deliberate override: the user names the file's L
    assert _load(files["other_L"], info, original_length=8192).original_max_position_embeddings == 8192
    # an override that contradicts the file is not silently ignored
    with pytest.raises(UserError, match="--original-length is 512"):
        _load(files["good"], info, original_length=512)


def test_reference_csv_takes_L_from_the_model_or_the_flag(files, info):
    assert _load(files["csv"], info, target_length=1024).original_max_position_embeddings == 256
    assert _load(files["csv"], info, target_length=1024, original_length=128).original_max_position_embeddings == 128


def test_a_reference_csv_without_its_target_length_names_a_flag_the_command_has(files, info, tmp_path, capsys):
    """A CSV holds no L'. The refusal named ``--rope-theta`` (no command has it) and ``--target-length`` to
    ``finetune`` (which has none) and to ``search --base-factors`` (whose --target-length was given and is not the
    base file's L'; battery 12a): a command with the flag is told to give it, the others to use a factors.json."""
    with pytest.raises(UserError, match="without the target length L'\\): give --target-length N"):
        _load(files["csv"], info, target_flag="--target-length")
    with pytest.raises(UserError) as e:
        _load(files["csv"], info, override_flag=None)  # finetune, a pipeline's fine-tuning stage
    assert "--target-length N -o DIR` writes one as DIR/factors.json" in str(e.value)
    assert "--rope-theta" not in str(e.value) and "give --target-length" not in str(e.value)
    rc = main(["search", "--model", "tiny", "--data", str(tmp_path), "--base-factors", str(files["csv"]),
               "--target-length", "1024", "-o", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and "use a factors.json here" in err and "give --target-length" not in err


def test_a_target_length_the_file_contradicts_is_refused_not_ignored(files, info):
    """``export/generate --factors factors.json --target-length 8x``: the file's own L' was used unsaid (a 2048
    asked for, 1024 exported; battery 5). The flag gives a CSV its L'; for another file it must agree."""
    flag = {"target_flag": "--target-length"}
    with pytest.raises(UserError, match="says its target length is L'=1024 but --target-length is 2048"):
        _load(files["good"], info, target_length=2048, **flag)
    assert _load(files["good"], info, target_length=1024, **flag).max_position_embeddings == 1024
    assert _load(files["csv"], info, target_length=2048, **flag).max_position_embeddings == 2048
    assert _load(files["good"], info, target_length=2048).max_position_embeddings == 1024  # eval's own longest length


def test_check_fits_on_a_built_factor_set(info):
    from longrope.models.factor_files import check_fits
    from longrope.rope import FactorSet

    fs = FactorSet(long_factor=np.ones(8), original_max_position_embeddings=256, max_position_embeddings=512,
                   rope_theta=1e4)
    with pytest.raises(UserError, match="x.json: long_factor has 8 values but tiny has rotary dim 64"):
        check_fits(fs, info, source="x.json", model="tiny")


# ------------------------------------------------------------------ every command, before the weights
def _commands(path, tmp):
    common = ["--model", "tiny", "--factors", str(path)]
    return {
        "generate": ["generate", *common, "--prompt", "hi", "--max-new-tokens", "2"],
        "export-hf": ["export", *common, "-o", str(tmp / "hf")],
        "export-gguf": ["export", *common, "--format", "gguf", "-o", str(tmp / "m.gguf")],
        "eval-ppl": ["eval", "ppl", *common, "--data", str(tmp / "shards"), "--lengths", "256", "-o",
                     str(tmp / "ppl")],
        "eval-passkey": ["eval", "passkey", *common, "--lengths", "512", "--trials", "1", "-o", str(tmp / "pk")],
        "finetune": ["finetune", *common, "--data", str(tmp / "shards"), "--steps", "1", "-o", str(tmp / "ft")],
    }


@pytest.mark.parametrize("command", ["generate", "export-hf", "export-gguf", "eval-ppl", "eval-passkey", "finetune"])
@pytest.mark.parametrize("bad, needle", [("malformed", "not valid JSON"), ("theta", "rope_theta=500000"),
                                         ("dim", "rotary dim is 64"), ("cut", "long_factor has 10 values"),
                                         ("other_L", "L=8192")])
def test_every_command_checks_factors_before_loading_weights(files, tmp_path, capsys, no_weights, command, bad,
                                                             needle):
    argv = _commands(files[bad], tmp_path)[command]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0] and str(files[bad]) in lines[0], lines[0]
    assert not any(p.name in ("hf", "m.gguf", "ppl", "pk", "ft") for p in tmp_path.iterdir())


def test_one_rotary_fit_rule_for_every_consumer(info):
    """The commands, the patch, the GGUF export and a search plan's base set share one rule (and one
    base tolerance): a base rounded through float32 (as GGUF stores it) fits, a base 1e-5 off does not."""
    import dataclasses
    import types

    from longrope.models.factor_files import ROPE_THETA_RTOL, check_fits, check_rotary_fit, rotary_fit_problem
    from longrope.rope import make_baseline
    from longrope.search.plan import plan_search

    fs = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                       original_length=info.original_max_position_embeddings, target_length=1024)
    near = info.rope_theta * (1 + 6e-8)  # float32's relative rounding
    off = info.rope_theta * (1 + 10 * ROPE_THETA_RTOL)
    assert rotary_fit_problem(fs, info.rotary_dim, near) is None
    assert check_fits(fs, dataclasses.replace(info, rope_theta=near), source="f") is fs
    assert "rope_theta=10000 but the model has rope_theta=10000.1" in rotary_fit_problem(fs, info.rotary_dim, off)
    short = types.SimpleNamespace(long_factor=[1.0] * 32, short_factor=[1.0] * 8, rope_theta=info.rope_theta,
                                  original_max_position_embeddings=256, max_position_embeddings=1024)
    assert rotary_fit_problem(short, 64, info.rope_theta, "tiny") == (
        "short_factor has 8 values but tiny has rotary dim 64 (needs 32)")
    with pytest.raises(UserError, match=r"^f\.json: factor set is for rope_theta=10000 .*; do this$"):
        check_rotary_fit(fs, info.rotary_dim, off, source="f.json", who="tiny", fix="do this")
    rope = {"rope_theta": off, "rotary_dim": info.rotary_dim, "original_length": 256}
    with pytest.raises(UserError, match="base_factors"):
        plan_search(rope, target_length=None, base=fs, short=True)
    rope["rope_theta"] = near
    assert plan_search(rope, target_length=None, base=fs, short=True) is not None


def test_a_function_taking_the_model_s_rope_facts_refuses_anything_else_in_one_line():
    """battery 20b: longrope_config_entries(fs, None), check_fits(fs, "tiny", ...), load_factors_for(path, {...}) and
    compare.factor_set(spec, None) were AttributeErrors ("'NoneType' object has no attribute
    'original_max_position_embeddings'"): the one gate of a RopeInfo (families.require_supported) checks its kind."""
    import pytest

    from longrope.errors import UserError
    from longrope.models import longrope_config_entries, read_rope_info
    from longrope.models.factor_files import check_fits, load_factors_for
    from longrope.rope import make_baseline
    from longrope.runs.compare import factor_set

    info = read_rope_info("tiny")
    fs = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                       original_length=info.original_max_position_embeddings, target_length=1024)
    for bad in (None, "tiny", {"rope_theta": info.rope_theta}):
        for call, args in ((longrope_config_entries, (fs, bad)), (check_fits, (fs, bad, "f.json")),
                           (load_factors_for, ("f.json", bad)), (factor_set, ("yarn@2x", bad, 512))):
            with pytest.raises(UserError, match="expected the model's RopeInfo"):
                call(*args) if call is not check_fits else check_fits(args[0], args[1], source=args[2])


def test_fit_and_csv_helpers_check_their_arguments_in_one_line(tmp_path):
    """rotary_fit_problem checks the factor set, rotary dim and base by their one checks (rotary_dim=NaN was int()'s
    ValueError, None a TypeError, rope_theta=None float()'s TypeError); csv_fields checks its path as every path
    argument (a number was pathlib's TypeError) (battery 21b)."""
    import pytest

    from longrope.errors import UserError
    from longrope.formats.factors import csv_fields
    from longrope.models.factor_files import rotary_fit_problem
    from longrope.rope import FactorSet

    fs = FactorSet.identity(16, 1e4, 256, 1024)
    for call in (lambda: rotary_fit_problem(fs, float("nan"), 1e4), lambda: rotary_fit_problem(fs, None, 1e4),
                 lambda: rotary_fit_problem(fs, 16, None), lambda: rotary_fit_problem("f.json", 16, 1e4),
                 lambda: csv_fields(5, rope_theta=1e4, original_length=256, target_length=1024)):
        with pytest.raises(UserError):
            call()
    assert rotary_fit_problem(fs, 16, 1e4) is None and "rotary dim 32" in rotary_fit_problem(fs, 32, 1e4)
