"""bench/bench_smollm2.py records a search run and its evaluation runs (here: the embedded model at
2x with tiny budgets, the same commands the SmolLM2 benchmark runs at 16k)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from longrope.cli import main as cli

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_smollm2", BENCH / "bench_smollm2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_records_the_search_the_perplexities_and_the_passkey(tmp_path, monkeypatch):
    from longrope.embedded import CORPUS_DIR

    shards, search = tmp_path / "shards", tmp_path / "search"
    assert cli(["tokenize", "--tokenizer", "tiny", "--input", f"search={CORPUS_DIR / 'search'}",
                f"heldout={CORPUS_DIR / 'heldout'}", "-o", str(shards), "--quiet"]) == 0
    assert cli(["search", "--model", "tiny", "--data", str(shards), "--target-length", "512", "--samples", "1",
                "--max-evals", "2", "--no-report", "--quiet", "-o", str(search)]) == 0
    for m in ("pi", "yarn"):
        assert cli(["baseline", "--model", "tiny", "--method", m, "--target-length", "512",
                    "-o", str(tmp_path / "b" / m / "factors.json")]) == 0
    factors = [str(tmp_path / "b" / "pi"), str(tmp_path / "b" / "yarn"), str(search)]
    assert cli(["eval", "ppl", "--model", "tiny", "--data", str(shards), "--lengths", "256,512", "--samples", "2",
                "--quiet", "-o", str(tmp_path / "ppl"), "--factors", *factors]) == 0
    assert cli(["eval", "passkey", "--model", "tiny", "--lengths", "512", "--trials", "1", "--depths", "0.5",
                "--quiet", "-o", str(tmp_path / "pk"), "--factors", *factors]) == 0
    rec_path = tmp_path / "rec" / "smollm2-2x.json"
    mod = _module(monkeypatch)
    assert mod.main(["--search", str(search), "--ppl", str(tmp_path / "ppl"), "--passkey", str(tmp_path / "pk"),
                     "--record", str(rec_path)]) == 0
    rec = json.loads(rec_path.read_text())
    ppl = {(r["factors"], r["length"]): r["ppl"] for r in json.loads((tmp_path / "ppl" / "summary.json")
                                                                       .read_text())["results"]}
    best = min(("pi", "yarn"), key=lambda m: ppl[(m, 512)])
    assert rec["values"]["best_closed_form"] == best
    assert rec["values"]["ratio_to_best"] == ppl[("search", 512)] / ppl[(best, 512)]
    assert rec["values"]["tokens_512"] == 2 * 511
    assert [r[0] for r in rec["tables"]["ppl"]["rows"]] == ["none", "pi", "yarn", "search"]
    assert (rec_path.parent / "smollm2-2x" / "factors.json").is_file()
    assert mod.main(["--search", str(tmp_path / "nowhere"), "--ppl", str(tmp_path / "ppl"),
                     "--record", str(tmp_path / "x.json")]) == 2
