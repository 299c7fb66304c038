"""A resume is as safe as a start: bound to its inputs by content, from verified checkpoints whose
fields are in range; every refusal is one line (a UserError) before the model is loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from longrope.errors import ConfigError, UserError
from longrope.train import finetune
from longrope.train.checkpoint import STATE_FILE, checkpoint_dirs
from tests.train.train_helpers import standard_corpus, write_factors


@pytest.fixture
def killed_run(make_config, tmp_path):
    """A 4-step run with checkpoints at 2 and 4, then copied aside: ``copy()`` gives a fresh folder of it
    (a run killed after its step-4 checkpoint, as far as a resume can tell)."""
    done = finetune(make_config(steps=4, checkpoint_every=2, keep_checkpoints=2, output=str(tmp_path / "base")))
    n = iter(range(100))

    def copy() -> Path:
        out = tmp_path / f"run-{next(n)}"
        shutil.copytree(done.output, out)
        shutil.rmtree(out / "model")
        return out

    return copy


def _resume(make_config, out, **overrides):
    said: list[str] = []
    result = finetune(make_config(steps=4, checkpoint_every=2, output=str(out), resume=True, **overrides),
                      log=said.append)
    return result, said


def test_inputs_changed_in_place_are_refused_by_content(make_config, killed_run, factors_file, corpus_dir, tmp_path):
    out = killed_run()
    write_factors(factors_file, target=8 * 32)  # another factor set at the same path
    with pytest.raises(ConfigError, match=r"factors .* now holds other factors than the checkpoint was trained with"):
        _resume(make_config, out)
    write_factors(factors_file)  # the same content again, written anew: accepted
    moved = tmp_path / "elsewhere.json"
    shutil.copy(factors_file, moved)  # and by content, not by path: a moved file resumes
    shutil.rmtree(corpus_dir)
    standard_corpus(corpus_dir, n_train=5)  # the shard folder rebuilt at the same path with other documents
    with pytest.raises(ConfigError, match=r"data .* now holds other documents or tokens"):
        _resume(make_config, out, factors=str(moved))
    shutil.rmtree(corpus_dir)
    standard_corpus(corpus_dir)
    result, _ = _resume(make_config, out, factors=str(moved))
    assert result.resumed_from == 4
    with pytest.raises(ConfigError, match="dtype resolves to mixed precision 'bf16' here but the checkpoint was "
                                          "trained with 'no'"):
        _resume(make_config, killed_run(), dtype="bfloat16")


def test_another_factor_file_given_on_resume_is_named_with_the_checkpoints(make_config, killed_run, factors_file,
                                                                          tmp_path):
    """``--factors other.json --resume``: the refusal said "now holds ...; restore it", as if the file had been
    rewritten; it names the file the checkpoint was trained with instead."""
    other = tmp_path / "other.json"
    write_factors(other, target=8 * 32)
    with pytest.raises(ConfigError) as e:
        _resume(make_config, killed_run(), factors=str(other))
    msg = str(e.value)
    assert "holds other factors than the checkpoint was trained with" in msg and "now holds" not in msg
    assert f"give the checkpoint's ({factors_file.resolve()})" in msg and "restore it" not in msg



def test_a_model_rebuilt_at_the_same_path_is_refused(make_config, killed_run, tiny_dir, build_tiny_model):
    out = killed_run()
    build_tiny_model("llama", seed=1).save_pretrained(tiny_dir)  # other weights, same folder
    with pytest.raises(ConfigError, match=r"model .* now holds another model"):
        _resume(make_config, out)


def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_one_and_none_intact_is_refused(make_config,
                                                                                                 killed_run):
    out = killed_run()
    newest = checkpoint_dirs(out)[-1]
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-400:] = bytes(400)  # 400 bytes of the weights zeroed
    weights.write_bytes(bytes(data))
    result, said = _resume(make_config, out)
    assert result.resumed_from == 2 and result.steps == 4
    assert any("skipped 1 damaged checkpoint" in m and "model.safetensors is damaged" in m and "step-00000002" in m
               for m in said), said
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        (ckpt / "optimizer.bin").write_bytes((ckpt / "optimizer.bin").read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="no intact checkpoint to resume from: .*optimizer.bin is damaged"):
        _resume(make_config, out)


def _edit_state(ckpt: Path, *, resign: bool = True, **fields) -> None:
    """Edit train_state.json; ``resign``: recompute its own digest too, as a deliberate editor would (so
    that the range checks behind it are what is tested)."""
    from longrope.io import sealed

    doc = json.loads((ckpt / STATE_FILE).read_text())
    for key, value in fields.items():
        if key == "files" and value is None:
            doc.pop("files")
        elif key == "files":
            doc["files"].update(value)
        elif key == "run":
            doc["run"].update(value)
        else:
            doc[key] = value
    if resign:
        doc = sealed(doc)
    (ckpt / STATE_FILE).write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, message", [
    ({"step": -5}, r"step must be an integer in \[0, .*\], got -5"),
    ({"tokens": 10**400}, "tokens must be an integer in .*, got an integer of 401 digits"),
    ({"step": "4"}, "step must be an integer"),
    ({"cursor": {"epoch": 0, "index": 999, "offset": 0}}, r"the data cursor .* points at document 999 of 6"),
    ({"cursor": {"epoch": 0, "index": 0, "offset": 10**6}}, r"points 1000000 tokens into a document"),
    ({"seconds": "x"}, "seconds must be a number"),
    ({"files": {"model.safetensors": "0" * 64}}, "model.safetensors is damaged"),
    ({"files": {"../../config.json": "0" * 64}}, r"\.\./\.\./config.json is missing"),
    ({"files": None}, "records no file digests"),
])
def test_hand_edited_checkpoint_states_are_refused_in_one_line(make_config, killed_run, edit, message):
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        _edit_state(ckpt, **edit)
    with pytest.raises(UserError, match=message) as err:
        _resume(make_config, out)
    assert "\n" not in str(err.value)


def test_entries_of_the_run_folder_replaced_by_hand_are_refused_before_training_or_replaced(make_config, killed_run):
    """What the run writes as a folder found as a file is one line before any training (not an OS error, or a
    refusal after the work); a link planted as a later checkpoint is skipped and replaced, never followed; a
    log line that is not UTF-8 is damage like a torn line (the log ends there), not a traceback."""
    out = killed_run()
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints").write_text("x")
    with pytest.raises(UserError, match=r"checkpoints is not a folder .*move it away") as err:
        _resume(make_config, out)
    assert "\n" not in str(err.value)
    out = killed_run()
    (out / "model").write_text("x")
    with pytest.raises(UserError, match=r"model is not a folder .*move it away"):
        _resume(make_config, out)
    out = killed_run()
    shutil.rmtree(out / "checkpoints" / "step-00000004")
    (out / "checkpoints" / "step-00000004").symlink_to("step-00000002")
    log = (out / "train_log.jsonl").read_bytes().split(b"\n")
    log[1] = b'{"step": 2, "loss": "\xff"}'
    (out / "train_log.jsonl").write_bytes(b"\n".join(log))
    result, said = _resume(make_config, out)
    assert result.resumed_from == 2 and result.steps == 4
    assert any("step-00000004 is a link to step-00000002, not a checkpoint this run saved" in m for m in said), said
    newest = out / "checkpoints" / "step-00000004"
    assert newest.is_dir() and not newest.is_symlink() and (out / "checkpoints" / "step-00000002").is_dir()
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 3, 4]


def test_an_edit_of_the_state_in_range_is_caught_by_its_digest(make_config, killed_run):
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        _edit_state(ckpt, resign=False, cursor={"epoch": 0, "index": 1, "offset": 3})  # a valid position
    with pytest.raises(UserError, match="train_state.json is damaged or edited"):
        _resume(make_config, out)


def test_a_file_not_saved_with_the_checkpoint_is_refused(make_config, killed_run):
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        (ckpt / "pytorch_model.bin").write_bytes(b"planted")
    with pytest.raises(UserError, match="pytorch_model.bin was not saved with the checkpoint"):
        _resume(make_config, out)


def test_a_file_torch_refuses_is_one_line_even_with_a_matching_digest(make_config, killed_run):
    import hashlib
    import pickle

    out = killed_run()
    ckpt = checkpoint_dirs(out)[-1]
    hostile = pickle.dumps(np.ones(3))  # not a weights-only pickle: torch's safe unpickler refuses it
    (ckpt / "optimizer.bin").write_bytes(hostile)
    _edit_state(ckpt, files={"optimizer.bin": hashlib.sha256(hostile).hexdigest()})
    with pytest.raises(UserError, match=r"cannot load the checkpoint .*step-00000004"):
        _resume(make_config, out)


def test_saving_a_tied_model_says_nothing_about_shared_tensors(make_config, build_tiny_model, tmp_path, caplog):
    """accelerate logs "Removed shared tensor" on every save of tied weights: nothing a user can act on."""
    import logging

    tied = tmp_path / "tied-llama"
    build_tiny_model("llama", tie_word_embeddings=True).save_pretrained(tied)
    caplog.set_level(logging.WARNING)
    finetune(make_config(model=str(tied), steps=2, checkpoint_every=1, output=str(tmp_path / "tied")))
    assert not [r for r in caplog.records if "shared tensor" in r.getMessage()]


def test_a_resume_that_resolves_another_precision_is_refused(make_config, killed_run):
    """``--dtype auto`` is bf16 on a GPU and float32 on a CPU: the same flag, other numbers."""
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        _edit_state(ckpt, run={"mixed_precision": "bf16"})  # as if trained where auto meant bf16
    with pytest.raises(ConfigError, match="dtype resolves to mixed precision 'no' here but the checkpoint was "
                                          "trained with 'bf16'"):
        _resume(make_config, out)


def test_the_precision_a_dtype_resolves_to_decides_a_resume_not_its_spelling(make_config, killed_run):
    """A run started with ``--dtype auto`` where it meant float32 (a CPU) and resumed where auto means bf16 (a
    GPU) was told to give the checkpoint's precision with --dtype; given (float32), it was refused because the
    checkpoint recorded 'auto' (battery 9b): no flag resumed it. The resolved precision is what is compared."""
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        _edit_state(ckpt, run={"dtype": "auto"})  # started with auto on this CPU: no mixed precision
    result, _ = _resume(make_config, out, dtype="float32")
    assert result.resumed_from == 4
    out = killed_run()
    for ckpt in checkpoint_dirs(out):
        _edit_state(ckpt, run={"dtype": "auto", "mixed_precision": "bf16"})  # auto meant bf16 there
    with pytest.raises(ConfigError, match="resolves to mixed precision 'no' here"):
        _resume(make_config, out, dtype="float32")
    result, _ = _resume(make_config, out, dtype="bfloat16")
    assert result.resumed_from == 4


def test_without_a_log_the_warnings_are_logged_as_warnings(make_config, killed_run, caplog):
    """The command line passes no ``log``: the messages went to the logger at INFO, which nothing shows, so a
    skipped damaged checkpoint (the run silently redid its steps) was never said (battery 9b). Warnings are
    logged at WARNING (Python shows those on stderr when no logging is configured), the rest at INFO."""
    import logging

    out = killed_run()
    (checkpoint_dirs(out)[-1] / "notes.txt").write_text("not saved with the checkpoint")
    caplog.set_level(logging.INFO, logger="longrope.train.loop")
    result = finetune(make_config(steps=4, checkpoint_every=2, output=str(out), resume=True))
    assert result.resumed_from == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("warning: skipped 1 damaged checkpoint") \
        and "notes.txt" in warned[0], warned
    assert any(r.levelno == logging.INFO and "resumed from" in r.getMessage() for r in caplog.records)


def test_a_resume_with_another_process_count_names_tokens_per_step_as_the_fix():
    """battery 15: a 2-process run with --grad-accum 2 resumed in one process was told '--tokens-per-step is 1024
    but the checkpoint was made with 2048; resume with the same value': a flag the user never gave, with a fix that
    then contradicts their --grad-accum. Now it names what the number is made of and the flag that resumes it."""
    from longrope.options import field_flags
    from longrope.train import FinetuneConfig
    from longrope.train.checkpoint import check_same_run

    with pytest.raises(ConfigError) as caught:
        check_same_run({"tokens_per_step": 2048, "seed": 0}, {"tokens_per_step": 1024, "seed": 0})
    flags = field_flags(FinetuneConfig)
    text = caught.value.render(lambda f: flags.get(f, f))
    assert "processes" in text and "--tokens-per-step 2048 instead of --grad-accum" in text, text


def test_a_resume_with_other_tokens_per_step_typed_names_that_flag():
    """Battery 16: `finetune --resume --tokens-per-step 2048` of a 1024 run (no --grad-accum given) was told to
    resume 'with --tokens-per-step 1024 instead of --grad-accum', a flag it never gave; the battery-15 wording is
    for an accumulation (or process count) that changed."""
    from longrope.options import field_flags
    from longrope.train import FinetuneConfig
    from longrope.train.checkpoint import check_same_run

    with pytest.raises(ConfigError) as caught:
        check_same_run({"tokens_per_step": 1024, "seed": 0}, {"tokens_per_step": 2048, "seed": 0},
                       tokens_per_step_given=True)
    flags = field_flags(FinetuneConfig)
    text = caught.value.render(lambda f: flags.get(f, f))
    assert text.startswith("--tokens-per-step is 2048 but the checkpoint was made with 1024") and "grad" not in text


def test_a_checkpoint_linked_from_another_run_is_not_resumed_from(make_config, killed_run, tmp_path):
    """A checkpoint folder that is a symlink to another run's checkpoint (made with seed 1) was taken as this run's
    newest: the refusal said "--seed is 0 but the checkpoint was made with 1", the fix it offered (resume with seed
    1) continued the other run's trajectory in this folder. A link is no checkpoint this run saved: it is skipped,
    said so, for this run's own previous one."""
    other = finetune(make_config(steps=4, checkpoint_every=2, seed=1, output=str(tmp_path / "other")))
    out = killed_run()
    own = out / "checkpoints" / "step-00000004"
    shutil.rmtree(own)
    own.symlink_to(Path(other.output) / "checkpoints" / "step-00000004")
    result, said = _resume(make_config, out)
    assert result.resumed_from == 2
    assert any("is a link to" in m and "not a checkpoint this run saved" in m for m in said), said


def test_a_checkpoint_copied_from_another_run_is_not_resumed_from(make_config, killed_run, tmp_path):
    """battery 20: a checkpoint COPIED (not linked) from another run's folder (made with seed 1) into this one was
    taken as this run's newest: the refusal said "--seed is 0 but the checkpoint was made with 1 ... resume with the
    same value", and the resume it asked for continued the other run in this folder. The folder and each checkpoint
    record the run's id (drawn when it starts): another run's checkpoint is skipped, said so, for this run's own;
    alone, it is refused in one line. A copy of the whole folder is the same run and resumes."""
    other = finetune(make_config(steps=4, checkpoint_every=2, seed=1, output=str(tmp_path / "other")))
    out = killed_run()
    own = out / "checkpoints" / "step-00000004"
    shutil.rmtree(own)
    shutil.copytree(Path(other.output) / "checkpoints" / "step-00000004", own)
    result, said = _resume(make_config, out)
    assert result.resumed_from == 2
    assert any("step-00000004 was saved by another fine-tuning run" in m for m in said), said
    out = killed_run()
    shutil.rmtree(out / "checkpoints" / "step-00000002")
    shutil.rmtree(out / "checkpoints" / "step-00000004")
    shutil.copytree(Path(other.output) / "checkpoints" / "step-00000004", out / "checkpoints" / "step-00000004")
    with pytest.raises(UserError, match="no intact checkpoint to resume from: .* saved by another fine-tuning run"):
        _resume(make_config, out)
    result, _ = _resume(make_config, killed_run())  # the whole folder copied: the same run, resumed
    assert result.resumed_from == 4


def test_a_hand_edited_loss_log_neither_crashes_the_export_nor_passes_unsaid(make_config, killed_run):
    """train_log.jsonl edited between a kill and --resume ("loss": "abc") passed the log's step check: the resumed
    run trained to the end, then its export failed with a ValueError traceback. A line without the fields the
    readers use ends the log like a torn one, and a resume whose log lacks steps before its checkpoint says so."""
    out = killed_run()
    (out / "train_log.jsonl").write_text('{"step": 1, "loss": "abc", "kind": "long"}\n{"step": 2, "loss": 4.0}\n')
    result, said = _resume(make_config, out)
    assert result.resumed_from == 4 and len(result.losses) == 0
    assert any("holds 0 of the 4 steps before the checkpoint" in m for m in said), said


def test_checkpoint_files_get_the_modes_the_umask_gives(make_config, tmp_path):
    """safetensors writes its file 0600 whatever the umask: a checkpoint's weights were the one file of a run folder
    that the group and others could not read (to resume or copy it) where the umask gave them the rest (battery
    23a). Every file of a checkpoint has the mode a plain open() gives."""
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    finetune(make_config(steps=2, checkpoint_every=1, output=str(tmp_path / "modes")))
    files = [p for p in (tmp_path / "modes" / "checkpoints").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}


def test_a_no_bos_run_started_when_one_token_documents_were_trained_on_resumes_on_its_documents(
        make_config, tmp_path, monkeypatch):
    """Review of battery 29: a --no-bos run started before one-token training documents were left out (they have no
    target without BOS) recorded a selection with them; its resume was refused as if --exclude or the held-out split
    had changed ('restore it'), which the user never touched. It resumes on the documents it was started with."""
    import longrope.train.loop as loop
    from longrope.data import TokenCorpus
    from tests.train.train_helpers import pattern_doc, write_corpus

    docs = [(f"train/{k}.txt", pattern_doc(100, 40 + 37 * k, start=k), "train") for k in range(4)]
    docs += [(f"train/one-{k}.txt", np.array([9 + k]), "train") for k in range(4)]
    docs += [("books/search-a.txt", pattern_doc(200, 300), "search"),
             ("books/heldout-a.txt", pattern_doc(300, 300), "heldout")]
    data = str(write_corpus(tmp_path / "mixed", docs))
    new_rows = loop.training_documents

    def before(corpus, **kwargs):  # the selection of those days: every non-empty document, with BOS or without
        return new_rows(corpus, **{**kwargs, "bos": True})

    with monkeypatch.context() as m:
        m.setattr(loop, "training_documents", before)
        whole = finetune(make_config(data=data, bos=False, steps=4, keep_checkpoints=2))
    cut = tmp_path / "cut"  # the run killed after its step-2 checkpoint
    shutil.copytree(whole.output, cut)
    shutil.rmtree(cut / "model")
    shutil.rmtree(checkpoint_dirs(cut)[-1])
    assert len(new_rows(TokenCorpus.open(data), bos=False)) == 4  # the one-token documents are left out now
    resumed = finetune(make_config(data=data, bos=False, steps=4, output=str(cut), resume=True))
    assert resumed.resumed_from == 2
    assert resumed.final_loss == whole.final_loss  # the same documents in the same order as the run it continues
