"""Benchmark: does a real llama.cpp apply our GGUF export's factors? Perplexity, llama.cpp vs longrope.

For a model and a factor set at target length L' (default: YaRN factors from
``longrope baseline --method yarn``, or ``--factors`` from a search), on held-out windows of
``--window-length`` tokens (BOS + the start of each held-out document, then the next chunks):

1. ours: the model with the factors installed, long factors (the context exceeds L), exact NLL;
2. llama.cpp: ``longrope export --format gguf`` of the same model and factors, run by the llama.cpp
   that node-llama-cpp 3.21.1 ships (prebuilt CPU build) with a context of the window length,
   teacher-forced on the very same token ids (``bench/llamacpp_ppl.mjs``);
3. the unscaled model (ours, no factors) on the same windows, to show the factors matter.

``score_last=K`` (in a ``--case``) scores only the last K tokens of each window on both sides (llama.cpp's
per-token probability maps over the vocabulary are the slow part; the last tokens sit deepest in
the extended range). n̂ cannot be expressed in GGUF: with n̂ ≥ 2 the comparison uses the factor set
with n̂ = 0, and ours with n̂ is reported beside it.

    .venv/bin/python -m bench.bench_llamacpp --case tiny,target=2048 \\
        --case tiny,factors=runs/search/factors.json \\
        --case smollm2,target=16384,windows=1,score_last=1024,goal=0.02

Writes ``bench/results/llamacpp.json`` and ``llamacpp.md`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import _llamacpp
from bench._args import amount, count, refusing
from bench._report import add_out_option, new_record, put_table, put_value, write_record
from longrope.evaluate.stats import perplexity

DESCRIPTION = """\
Perplexity of the same model and factor set computed by longrope (the factors installed in the
transformers model) and by a real llama.cpp (the llama.cpp build node-llama-cpp 3.21.1 ships,
prebuilt for the CPU) reading `longrope export --format gguf`, teacher-forced on the same token
ids from held-out documents, with a context of the window length (> L, so llama.cpp picks the long
factors). The unscaled model's perplexity on the same windows shows how far the factors move it.
For a GGUF source (SmolLM2) llama.cpp runs the quantized weights while longrope runs them
dequantized, which accounts for a small difference on its own."""


def held_out_windows(tokenizer, docs_dir: Path, length: int, n: int, bos: int | None) -> list[list[int]]:
    """``n`` windows of ``length`` tokens (BOS + text), round-robin over the documents' chunks."""
    from longrope.errors import UserError

    docs = []
    for path in sorted(docs_dir.glob("*.txt")):
        ids = tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
        body = length - (1 if bos is not None else 0)
        docs.append([ids[i:i + body] for i in range(0, len(ids) - body + 1, body)])
    windows, k = [], 0
    while len(windows) < n and any(k < len(chunks) for chunks in docs):
        for chunks in docs:
            if k < len(chunks) and len(windows) < n:
                windows.append(([bos] if bos is not None else []) + chunks[k])
        k += 1
    if len(windows) < n:
        raise UserError(f"only {len(windows)} windows of {length} tokens in {docs_dir}; ask for fewer or shorter")
    return windows


def nll_last(model, window: list[int], score_from: int) -> tuple[float, int]:
    """Summed NLL of tokens ``score_from..`` of ``window`` (exact; LM head in chunks)."""
    import torch

    from longrope.evaluate import lm

    ids = torch.tensor([window], device=lm.model_device(model))
    with torch.no_grad():
        hidden = lm.hidden_states(model, ids)[0]  # [seq, hidden]
        h = hidden[score_from - 1:-1]
        labels = ids[0, score_from:]
        nll, _ = lm.chunked_nll(model, h, labels, chunk_size=lm.default_chunk_size(model, h.shape[0]),
                                transform=lm.logit_transform(model.config))
    return float(nll.double().sum()), int(labels.numel())


CASE_KEYS = ("factors", "target", "window", "windows", "score_last", "goal")


def parse_case(text: str) -> dict:
    """``MODEL[,factors=F][,target=N][,window=N][,windows=N][,score_last=N][,goal=X]`` → dict (an argparse
    ``type``: ``window=x`` was int()'s traceback, and a bad part was found only once llama.cpp was there)."""
    model, *parts = text.split(",")
    if not model:
        raise argparse.ArgumentTypeError(f"{text!r} names no model; start with tiny, smollm2, a folder or a .gguf")
    case = {"spec": text, "model": model, "factors": None, "target": None, "window": None, "windows": 4, "score_last": None,
            "goal": 0.01}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in CASE_KEYS or not value:
            raise argparse.ArgumentTypeError(f"bad part {part!r}; keys: {', '.join(CASE_KEYS)}")
        try:
            case[key] = value if key == "factors" else amount(value) if key == "goal" else count()(value)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{key}: {exc}") from None
    if not case["factors"] and not case["target"]:
        raise argparse.ArgumentTypeError(f"{text!r} needs factors=F or target=N (YaRN factors at N)")
    return case


def run_case(case: dict, docs_dir: Path | None, threads: int, outtype: str) -> dict:
    """One model + factor set: longrope vs llama.cpp vs unscaled on the same held-out windows."""
    import torch

    from longrope.embedded import CORPUS_DIR
    from longrope.models import install_factors, load_model, read_rope_info
    from longrope.models.factor_files import load_factors_for
    from longrope.models.gguf import export_gguf, export_gguf_from_gguf
    from longrope.models.loading import resolve_source
    from longrope.rope import make_baseline

    info = read_rope_info(case["model"])
    if case["factors"]:
        fs = load_factors_for(case["factors"], info, target_length=case["target"])
        label = case["factors"]
    else:
        fs = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                           original_length=info.original_max_position_embeddings, target_length=case["target"])
        label = "yarn (baseline)"
    length = case["window"] or fs.max_position_embeddings
    score_last = case["score_last"] or (length - 1)
    docs_dir = docs_dir or Path(CORPUS_DIR) / "heldout"
    t0 = time.time()
    model, tok = load_model(case["model"], dtype=torch.float32)
    bos = tok.bos_token_id if tok is not None else None
    windows = held_out_windows(tok, docs_dir, length, case["windows"], bos)
    score_from = length - score_last
    gguf_fs = fs.with_(start_tokens=0) if fs.start_tokens >= 2 else fs
    raw = [nll_last(model, w, score_from) for w in windows]  # unscaled: before installing anything
    patch = install_factors(model, gguf_fs)
    patch.mode = "long"  # the context exceeds L: llama.cpp uses the long factors for every position
    ours = [nll_last(model, w, score_from) for w in windows]
    hat = None
    if gguf_fs is not fs:
        patch.swap(fs)
        hat = [nll_last(model, w, score_from) for w in windows]
    t_ours = time.time() - t0
    with tempfile.TemporaryDirectory(prefix="longrope-llamacpp-") as tmp:
        out = Path(tmp) / "model.gguf"
        source = resolve_source(case["model"])
        if source.kind == "gguf":
            export_gguf_from_gguf(Path(source.location) / source.gguf_file, gguf_fs, out)
        else:
            patch.restore()
            export_gguf(model, tok, gguf_fs, out, outtype=outtype, name="bench")
        t1 = time.time()
        answer = _llamacpp.run({"model": str(out), "contextSize": length, "threads": threads,
                                "windows": windows, "scoreFrom": [score_from] * len(windows)})
        t_cpp = time.time() - t1
    count = sum(o[1] for o in ours)
    assert all(c["tokens"] == o[1] for c, o in zip(answer["windows"], ours)), (answer["windows"], ours)
    ppl = {name: perplexity(sum(x) / count) for name, x in (
        ("longrope", [o[0] for o in ours]), ("llamacpp", [c["nll"] for c in answer["windows"]]),
        ("unscaled", [r[0] for r in raw]))}
    if hat:
        ppl["longrope_with_start_tokens"] = perplexity(sum(h[0] for h in hat) / count)
    return {"model": case["model"], "factors": label, "L": fs.original_max_position_embeddings,
            "L_target": fs.max_position_embeddings, "m": fs.resolved_attention_factor(), "n_hat": fs.start_tokens,
            "window": length, "windows": len(windows), "scored": count, "context": answer.get("contextSize"),
            "ppl": ppl, "rel_diff": ppl["llamacpp"] / ppl["longrope"] - 1.0, "goal": case["goal"],
            "seconds_longrope": t_ours, "seconds_llamacpp": t_cpp, "factor_set": fs.to_dict(),
            "nll": {"longrope": ours, "llamacpp": answer["windows"], "unscaled": raw}}


@refusing
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", type=parse_case, action="append", required=True, metavar="SPEC",
                    help="MODEL[,factors=F][,target=N][,window=N][,windows=N][,score_last=N][,goal=X]: model "
                         "'tiny', 'smollm2', a folder or a .gguf; factors (default YaRN at target); window length "
                         "(default L'); windows (default 4); score the last K tokens (default all); goal: max "
                         "|relative PPL difference| (default 0.01). Repeatable.")
    ap.add_argument("--docs", default=None, help="folder of held-out .txt documents (default: the embedded ones)")
    ap.add_argument("--outtype", choices=("f32", "f16"), default="f32", help="GGUF weights for HF sources")
    ap.add_argument("--threads", type=count(), default=2, help="threads for torch and llama.cpp (default 2)")
    add_out_option(ap, "llamacpp")
    args = ap.parse_args(argv)
    if not _llamacpp.available():
        sys.exit("llama.cpp is not installed: run `npm i -E --no-save --no-package-lock node-llama-cpp@3.21.1` "
                 "in the repository root")
    import torch

    torch.set_num_threads(args.threads)
    cases = args.case
    rec = new_record("llamacpp", "llama.cpp applies the GGUF export's factors", script=__file__, argv=argv,
                     settings={"cases": [c["spec"] for c in cases], "threads": args.threads, "outtype": args.outtype,
                               "docs": args.docs or "embedded held-out documents"},
                     description=DESCRIPTION)
    results = [run_case(c, Path(args.docs) if args.docs else None, args.threads, args.outtype) for c in cases]
    rows = []
    for r in results:
        rows.append([r["model"], r["factors"], r["L"], r["L_target"], r["m"], f"{r['windows']} × {r['window']}",
                     r["scored"], r["ppl"]["longrope"], r["ppl"]["llamacpp"], r["rel_diff"], r["goal"],
                     abs(r["rel_diff"]) <= r["goal"], r["ppl"]["unscaled"], r["seconds_llamacpp"]])
    put_table(rec, "cases", ["model", "factors", "L", "L'", "m", "windows", "scored tokens", "PPL longrope",
                             "PPL llama.cpp", "difference", "goal", "within goal", "PPL unscaled",
                             "llama.cpp time (s)"], rows,
              formats=[None, None, None, None, ".4f", None, None, ".4f", ".4f", "+.3%", ".0%", "yes|no", ".3f", ".0f"],
              title="Perplexity on held-out windows, longrope vs llama.cpp (long factors: context > L)")
    for i, r in enumerate(results):
        put_value(rec, f"case{i}.rel_diff", r["rel_diff"], "+.3%")
        put_value(rec, f"case{i}.ppl_longrope", r["ppl"]["longrope"], ".4f")
        put_value(rec, f"case{i}.ppl_llamacpp", r["ppl"]["llamacpp"], ".4f")
        put_value(rec, f"case{i}.ppl_unscaled", r["ppl"]["unscaled"], ".3f")
        if "longrope_with_start_tokens" in r["ppl"]:
            put_value(rec, f"case{i}.ppl_longrope_with_start_tokens", r["ppl"]["longrope_with_start_tokens"], ".4f")
            rec["notes"].append(f"case {i}: n̂ = {r['n_hat']} cannot be written to GGUF; both sides use n̂ = 0 and "
                                "longrope's PPL with n̂ is `ppl_longrope_with_start_tokens`.")
    rec["notes"].append("llama.cpp chooses the long factors because the context (the window length) exceeds L; "
                        "it runs GGUF sources (SmolLM2 Q4_1) quantized, longrope dequantized.")
    rec["data"]["cases"] = results
    write_record(rec, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
