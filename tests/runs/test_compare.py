"""``longrope.runs.compare``: the comparison's settings and when a measured cell still stands (the cells
themselves are measured through the pipeline in test_pipeline.py)."""

from __future__ import annotations

import dataclasses

from longrope.runs.compare import CompareConfig, _stale_cell, passkey_protocol
from longrope.runs.evaluate import PasskeyConfig

METHODS = {"yarn": {"model": "tiny", "factors": {"2x": "yarn@2x"}}}


def _config(**kw) -> CompareConfig:
    return CompareConfig(data="d", methods=METHODS, ratios=("2x",), **kw)


def test_the_passkey_protocol_and_the_machine_settings_default_as_in_the_commands():
    """The compare stage had its own passkey defaults (4 keys per depth, greedy only) and its own device
    (cpu) and dtype; they are now the shared groups' (issue 24: one default per field)."""
    compare = {f.name: f.default for f in dataclasses.fields(CompareConfig)}
    passkey = {f.name: f.default for f in dataclasses.fields(PasskeyConfig)}
    assert compare["passkey_trials"] == passkey["trials"]
    assert compare["passkey_depths"] == passkey["depths"]
    assert compare["passkey_mode"] == passkey["mode"]
    assert compare["device"] == passkey["device"] and compare["dtype"] == passkey["dtype"]


def test_a_cell_measured_by_another_passkey_protocol_is_measured_again():
    config = _config()
    digests = {"yarn@2x": "d"}
    cell = {"method": "yarn", "ratio": "2x", "model": "tiny", "factors_sha256": "d", "passkey": 0.5,
            "passkey_protocol": passkey_protocol(config)}
    assert _stale_cell(cell, METHODS, digests, True, None, passkey_protocol(config)) is None
    other = _config(passkey_trials=2, passkey_mode="generate")
    assert "passkey protocol" in _stale_cell(cell, METHODS, digests, True, None, passkey_protocol(other))
    # a cell from before cells kept their protocol is taken as it is; a cell without a passkey is asked for one
    legacy = {k: v for k, v in cell.items() if k != "passkey_protocol"}
    assert _stale_cell(legacy, METHODS, digests, True, None, passkey_protocol(other)) is None
    bare = {k: v for k, v in legacy.items() if k != "passkey"}
    assert _stale_cell(bare, METHODS, digests, True, None, passkey_protocol(config)) == "its passkey is asked for"
    assert _stale_cell(bare, METHODS, digests, False, None, None) is None


def test_the_table_gives_the_passkeys_interval_and_what_each_number_rests_on():
    """compare.md (and the table the pipeline prints) gave a passkey accuracy of 20 keys as a bare '0.65' and the
    perplexities without the tokens they rest on (battery 20c)."""
    from longrope.runs.compare import format_table, tables

    cells = {(n, "8x"): {"ppl": p, "n_tokens": 4094, "passkey": a, "passkey_trials": 20, "passkey_ci95": ci}
             for n, p, a, ci in (("none", 50.27, 0.0, [0.0, 0.161]), ("yarn", 20.45, 0.65, [0.433, 0.819]))}
    methods = {n: {"model": "tiny", "factors": {"8x": n}} for n in ("none", "yarn")}
    table = format_table(tables(cells, methods, ["8x"], {"8x": 2048}))
    assert "| yarn | 20.45 | 0.65 [0.43, 0.82] |" in table, table
    assert "4,094 tokens scored" in table and "2,048 tokens per window" in table and "20 seeded keys" in table
