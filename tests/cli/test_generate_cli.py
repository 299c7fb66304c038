"""``longrope generate`` on the embedded tiny model (L = 256): JSON output, crossing L, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longrope.cli import main


def _run(capsys, *argv):
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def yarn_file(tmp_path_factory):
    from longrope.models import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    fs = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                       original_length=info.original_max_position_embeddings, target_length=2048)
    return fs.save(tmp_path_factory.mktemp("factors") / "yarn.json")


def test_json_output_crosses_L_and_matches_the_library(capsys, tmp_path, yarn_file):
    from longrope.models import install_factors, load_model
    from longrope.models.generation import generate
    from longrope.rope import FactorSet

    words = "the whale and the sea were old friends of the captain " * 23  # 254 tokens with BOS
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(words)
    code, out, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt-file",
                          str(prompt), "--max-new-tokens", "12", "--ignore-eos", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert set(got) == {"prompt_tokens", "new_tokens", "text"}
    assert len(got["new_tokens"]) == 12 and isinstance(got["text"], str)
    assert len(got["prompt_tokens"]) < 256 < len(got["prompt_tokens"]) + 12, "the prompt must cross L = 256"
    assert "re-fed once" in err
    model, tok = load_model("tiny")
    install_factors(model, FactorSet.load(yarn_file))
    ref = generate(model, tok, words, 12, stop_at_eos=False)
    assert ref.prompt_tokens[0] == got["prompt_tokens"] and ref.new_tokens[0] == got["new_tokens"]


def test_plain_text_output(capsys, yarn_file):
    code, out, _ = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt",
                        "It was a dark night", "--max-new-tokens", "5", "--mode", "long")
    assert code == 0 and out.strip()


def test_default_path_prints_no_library_progress_bar(capsys, yarn_file):
    # battery 4: generate has no bars of its own and no --quiet, so transformers' "Loading weights" bar was noise
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    try:
        code, out, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt",
                              "It was a dark night", "--max-new-tokens", "3")
    finally:
        hf_logging.enable_progress_bar()
    assert code == 0 and out.strip() and "Loading weights" not in err and err == ""


def test_generating_past_the_target_length_warns_once(capsys, tmp_path):
    from longrope.models import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    short = make_baseline("pi", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                          original_length=info.original_max_position_embeddings, target_length=260)
    path = short.save(tmp_path / "pi-260.json")
    prompt = "the whale and the sea were old friends of the captain " * 23  # 255 tokens as generate feeds them
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(path), "--prompt", prompt,
                        "--max-new-tokens", "12", "--ignore-eos")
    assert code == 0 and err.count("warning: prompt + --max-new-tokens reach 267 tokens") == 1, err
    assert "L' = 260" in err
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(path), "--prompt", prompt,
                        "--max-new-tokens", "5", "--ignore-eos")
    assert code == 0 and "warning" not in err  # 260 tokens: within L'


def test_reference_csv_needs_target_length(capsys, tmp_path):
    csv = tmp_path / "factors.csv"
    csv.write_text("".join(f"{x}\n" for x in np.linspace(1, 8, 32)))
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(csv), "--prompt", "a",
                        "--max-new-tokens", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--target-length" in err
    code, out, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(csv), "--prompt", "a b",
                          "--max-new-tokens", "2", "--target-length", "2048")
    assert code == 0, err


@pytest.mark.parametrize("argv, needle", [
    (["--prompt-file", "/nonexistent/p.txt", "--max-new-tokens", "3"], "--prompt-file"),
    (["--prompt", "", "--max-new-tokens", "3"], "empty"),
    (["--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
])
def test_bad_input_is_one_line(capsys, yarn_file, argv, needle):
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err


@pytest.mark.parametrize("argv, needle", [
    (["--sample", "--temperature", "0"], "--temperature must be a number > 0"),
    (["--sample", "--temperature", "-1"], "--temperature must be a number > 0"),
    (["--sample", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--sample", "--top-p", "0"], "--top-p must be in (0, 1]"),
])
def test_sampling_settings_are_checked_before_the_weights_load(capsys, yarn_file, no_weights, argv, needle):
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt", "hi",
                        "--max-new-tokens", "3", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_factors_for_another_original_length_need_the_flag(capsys, tmp_path, yarn_file):
    d = json.loads(yarn_file.read_text())
    d.update(original_max_position_embeddings=1024, max_position_embeddings=8192)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(d))
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(other), "--prompt", "hi",
                        "--max-new-tokens", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "L=1024" in err and "L=256" in err and "--original-length 1024" in err
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(other), "--prompt", "hi",
                        "--max-new-tokens", "2", "--original-length", "1024")
    assert code == 0, err


def test_a_prompt_file_with_a_byte_order_mark_is_the_same_prompt(capsys, tmp_path, yarn_file):
    """--prompt-file saved with a UTF-8 BOM put 3 tokens of it before the prompt, and the output changed (battery
    11a, as the .jsonl/.txt inputs of tokenize)."""
    outs = []
    for name, data in (("plain.txt", b"It was a dark night"), ("bom.txt", b"\xef\xbb\xbfIt was a dark night")):
        (tmp_path / name).write_bytes(data)
        code, out, _ = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt-file",
                            str(tmp_path / name), "--max-new-tokens", "2", "--json")
        assert code == 0
        outs.append(json.loads(out))
    assert outs[0] == outs[1]


def test_a_prompt_piped_in_with_prompt_file_dash_is_the_same_prompt(capsys, tmp_path, yarn_file, monkeypatch):
    """`cat book.txt | longrope generate --prompt-file -` was refused ("cannot read --prompt-file -: No such file or
    directory"): no prompt could be piped in (battery 20c open item). '-' reads standard input, within a bound."""
    import io
    import sys

    from longrope.cli import generate as command

    (tmp_path / "p.txt").write_text("It was a dark night")
    argv = ["generate", "--model", "tiny", "--factors", str(yarn_file), "--max-new-tokens", "2", "--json"]
    code, from_file, _ = _run(capsys, *argv, "--prompt-file", str(tmp_path / "p.txt"))
    assert code == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"It was a dark night")))
    code, piped, err = _run(capsys, *argv, "--prompt-file", "-")
    assert code == 0, err
    assert json.loads(piped) == json.loads(from_file)
    monkeypatch.setattr(command, "PROMPT_LIMIT", 8)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"It was a dark night")))
    code, _, err = _run(capsys, *argv, "--prompt-file", "-")
    assert code == 2 and "standard input holds more than" in err


def test_a_closed_standard_input_is_said_to_be_closed_not_an_empty_prompt(capsys, yarn_file, monkeypatch):
    """`longrope generate --prompt-file - <&-` said 'the prompt is empty; give the text to continue': a closed input
    read as an empty one, the way to pipe the prompt unsaid (battery 21)."""
    import sys

    monkeypatch.setattr(sys, "stdin", None)
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt-file", "-",
                        "--max-new-tokens", "2")
    assert code == 2 and err.count("\n") == 1 and "standard input is closed" in err and "| longrope generate" in err


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])
def test_json_output_on_an_ascii_console_is_json(monkeypatch, yarn_file, errors):
    """battery 28a: PYTHONIOENCODING=ascii generate --json printed the text's '«' as the console escape \\xab, which
    json.load refused ('Invalid \\escape'); now JSON's own \\u00ab, the same text once loaded."""
    import io
    import sys

    from longrope.models import install_factors, load_model
    from longrope.models.generation import generate
    from longrope.rope import FactorSet

    prompt = "« »« »« »« »« »« »"  # the tiny model continues it with a '«' (greedy, seeded weights)
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", errors=errors, write_through=True))
    code = main(["generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt", prompt,
                 "--max-new-tokens", "20", "--json"])
    model, tok = load_model("tiny")
    install_factors(model, FactorSet.load(yarn_file))
    text = generate(model, tok, prompt, 20).text[0]
    assert code == 0 and not text.isascii(), text
    assert json.loads(raw.getvalue().decode("ascii"))["text"] == text


def test_a_prompt_file_that_is_a_pipe_is_told_to_use_prompt_file_dash(capsys, tmp_path, yarn_file, no_weights):
    """battery 28a: --prompt-file <(cmd), /dev/stdin under a pipe or a named pipe was 'a special file (device, pipe or
    socket), not a file', no word of the spelling that reads a pipe (--prompt-file -)."""
    import os

    fifo = tmp_path / "prompt.fifo"
    os.mkfifo(fifo)
    code, out, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt-file",
                          str(fifo), "--max-new-tokens", "4")
    assert code == 2 and not out and err.count("\n") == 1
    assert f"--prompt-file {fifo}" in err and "--prompt-file - as standard input" in err, err


def test_a_model_folder_without_a_tokenizer_is_refused_before_its_weights_load(capsys, tmp_path, tiny_model_dir,
                                                                                no_weights):
    """battery 28a: a model folder without tokenizer files loaded its weights (minutes for a real model) before
    'has no tokenizer; text prompts need one'; now it is told before."""
    from longrope.rope import make_baseline

    factors = make_baseline("yarn", rope_theta=10000.0, rotary_dim=16, original_length=32,
                            target_length=128).save(tmp_path / "yarn.json")
    code, out, err = _run(capsys, "generate", "--model", str(tiny_model_dir), "--factors", str(factors), "--prompt",
                          "hi", "--max-new-tokens", "4")
    assert code == 2 and not out and err.count("\n") == 1 and "has no tokenizer" in err, err


def test_prompt_file_dash_at_a_terminal_says_it_reads_the_terminal(capsys, yarn_file, monkeypatch):
    """battery 28a: --prompt-file - with no pipe (standard input a terminal) waited for typed text without a word, as
    if hung; now one line says it reads the terminal and how to end the text (a pipe gets no such line)."""
    import io
    import sys

    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    argv = ["generate", "--model", "tiny", "--factors", str(yarn_file), "--max-new-tokens", "2", "--prompt-file", "-"]
    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"It was a dark night")))
    code, _, err = _run(capsys, *argv)
    assert code == 0 and "reading the prompt from the terminal" in err and "Ctrl-D" in err, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"It was a dark night")))
    code, _, err = _run(capsys, *argv)
    assert code == 0 and "terminal" not in err, err


def test_a_prompt_file_past_the_bound_is_refused_before_it_is_read_whole(capsys, tmp_path, yarn_file, monkeypatch,
                                                                         no_weights):
    """battery 28a: --prompt-file of a 6 GB file was read whole (standard input had a bound, a file none): under
    ulimit -v 'out of memory ... use shorter sequences, fewer samples'; now the bound of '-' and one line."""
    from longrope.cli import generate as command

    monkeypatch.setattr(command, "PROMPT_LIMIT", 8, raising=False)
    (tmp_path / "p.txt").write_text("It was a dark night")
    code, out, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--max-new-tokens", "2",
                          "--prompt-file", str(tmp_path / "p.txt"))
    assert code == 2 and not out and err.count("\n") == 1 and "p.txt holds more than" in err, err


def test_piped_text_that_is_not_utf8_is_told_to_convert_it_on_its_way_in(capsys, yarn_file, monkeypatch, no_weights):
    """battery 28a: UTF-16 piped into --prompt-file - was told 'iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8', a file
    nobody named; now the conversion goes in the pipe."""
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("It was".encode("utf-16"))))
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--max-new-tokens", "2",
                        "--prompt-file", "-")
    assert code == 2 and "| iconv -f UTF-16 -t UTF-8 |" in err and "FILE" not in err, err


_TEMPLATE = ("{% for m in messages %}{{ bos_token }}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
             "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_chat_template_sends_the_prompt_as_a_user_message_with_one_bos(capsys, tmp_path, yarn_file):
    """generate had no --chat-template (the lead's open item of battery 28a): an instruct model such as smollm2 got
    its question as raw text to continue. The prompt now goes through the tokenizer's template as RULER's
    --chat-template sends it, with the template's own special tokens only (no BOS added on top of its BOS)."""
    from longrope.models import install_factors, load_model
    from longrope.models.generation import generate
    from longrope.rope import FactorSet

    model, tok = load_model("tiny")
    folder = tmp_path / "chat-tiny"
    model.save_pretrained(folder)
    tok.chat_template = _TEMPLATE
    tok.save_pretrained(folder)
    code, out, err = _run(capsys, "generate", "--model", str(folder), "--factors", str(yarn_file), "--prompt",
                          "the whale", "--chat-template", "--max-new-tokens", "4", "--ignore-eos", "--json")
    assert code == 0, err
    got = json.loads(out)
    expected = tok(f"{tok.bos_token}<user>the whale<assistant>", add_special_tokens=False)["input_ids"]
    assert got["prompt_tokens"] == expected and expected.count(tok.bos_token_id) == 1
    install_factors(model, FactorSet.load(yarn_file))
    ref = generate(model, tok, [expected], 4, stop_at_eos=False)
    assert ref.new_tokens[0] == got["new_tokens"]


def test_chat_template_of_a_tokenizer_without_one_is_refused_before_the_weights(capsys, yarn_file, no_weights):
    code, _, err = _run(capsys, "generate", "--model", "tiny", "--factors", str(yarn_file), "--prompt", "hi",
                        "--chat-template", "--max-new-tokens", "2")
    assert code == 2 and err.count("\n") == 1 and "has no chat template; leave the flag out" in err


def test_a_chat_template_that_refuses_the_prompt_is_one_line_before_the_weights(capsys, tmp_path, yarn_file,
                                                                                request):
    """A template may refuse a conversation of one user message (raise_exception('... must start with a system
    message')): that was a 38-line jinja traceback after the weights had loaded (review of battery 29)."""
    from longrope.models import load_model

    model, tok = load_model("tiny")
    folder = tmp_path / "strict-chat-tiny"
    model.save_pretrained(folder)
    tok.chat_template = ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('Conversation must start "
                         "with a system message') }}{% endif %}")
    tok.save_pretrained(folder)
    request.getfixturevalue("no_weights")  # from here on, loading weights fails the test
    code, _, err = _run(capsys, "generate", "--model", str(folder), "--factors", str(yarn_file), "--prompt", "hi",
                        "--chat-template", "--max-new-tokens", "2")
    assert code == 2 and err.count("\n") == 1, err
    assert "chat template refuses" in err and "must start with a system message" in err
