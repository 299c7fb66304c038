"""Factor files: BOM, encodings, L' < L, and fuzzing — every file loads a usable FactorSet or
raises a one-line UserError, never another exception."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longrope.errors import UserError
from longrope.rope import FactorSet
from tests.rope.rope_strategies import hf_config_fields

BOM = "\ufeff"



def _fs(**kw):
    base = dict(long_factor=[1.0, 1.5, 2.0, 4.0], original_max_position_embeddings=64, max_position_embeddings=512,
                rope_theta=10000.0, method="pi")
    base.update(kw)
    return FactorSet(**base)


def _usable(fs: FactorSet) -> None:
    """What every loaded FactorSet must offer without raising."""
    assert isinstance(fs, FactorSet)
    assert fs.max_position_embeddings >= fs.original_max_position_embeddings >= 1
    assert math.isfinite(fs.scale) and fs.scale >= 1.0
    m = fs.resolved_attention_factor()
    assert math.isfinite(m) and m > 0
    for which in ("long", "short"):
        f = fs.inv_freq(which)
        assert np.isfinite(f).all() and (f > 0).all()
    again = FactorSet.from_dict(fs.to_dict())
    assert again.same_factors(fs, rtol=0.0)
    hf_config_fields(fs)


# ------------------------------------------------------------------ byte-order marks and encodings
def test_json_with_a_bom_is_json(tmp_path):
    p = tmp_path / "f.json"
    p.write_text(BOM + json.dumps(_fs().to_dict()), encoding="utf-8")
    assert FactorSet.load(p) == _fs()
    p.write_bytes(b"\xef\xbb\xbf  \n" + json.dumps(_fs().to_dict()).encode())  # BOM, then whitespace
    assert FactorSet.load(p) == _fs()


def test_hf_config_with_a_bom(tmp_path):
    cfg = {"max_position_embeddings": 512, "original_max_position_embeddings": 64, "rope_theta": 10000.0,
           "rope_scaling": {"rope_type": "longrope", "long_factor": [1.0, 2.0], "short_factor": [1.0, 1.0]}}
    (tmp_path / "config.json").write_text(BOM + json.dumps(cfg), encoding="utf-8")
    fs = FactorSet.load(tmp_path)
    assert fs.max_position_embeddings == 512 and list(fs.long_factor) == [1.0, 2.0]


def test_csv_with_a_bom(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text(BOM + "1.0\n2.5\n", encoding="utf-8")
    fs = FactorSet.load(p, rope_theta=1e4, original_length=64, target_length=256)
    assert list(fs.long_factor) == [1.0, 2.5]


@pytest.mark.parametrize("data", ["café".encode("latin-1"), json.dumps(_fs().to_dict()).encode("utf-16")])
def test_a_file_that_is_not_utf8_is_one_line(tmp_path, data):
    p = tmp_path / "f.json"
    p.write_bytes(data)
    with pytest.raises(UserError, match="not UTF-8") as e:
        FactorSet.load(p)
    assert "\n" not in str(e.value) and "f.json" in str(e.value)


# ------------------------------------------------------------------ L' below L
def test_target_below_original_is_refused_everywhere(tmp_path):
    with pytest.raises(UserError, match="L' must be >= L"):
        _fs(max_position_embeddings=32)
    d = _fs().to_dict()
    d["max_position_embeddings"] = 32
    with pytest.raises(UserError, match="below original_max_position_embeddings"):
        FactorSet.from_dict(d)
    (tmp_path / "f.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(UserError, match="L' must be >= L"):
        FactorSet.load(tmp_path / "f.json")
    (tmp_path / "f.csv").write_text("1.0\n2.0\n", encoding="utf-8")
    with pytest.raises(UserError, match="L' must be >= L"):
        FactorSet.load(tmp_path / "f.csv", rope_theta=1e4, original_length=64, target_length=32)
    cfg = {"max_position_embeddings": 16, "original_max_position_embeddings": 64,
           "rope_scaling": {"rope_type": "longrope", "long_factor": [1.0], "short_factor": [1.0]}}
    with pytest.raises(UserError, match="L' must be >= L"):
        FactorSet.from_hf_config(cfg)
    assert _fs(max_position_embeddings=64).scale == 1.0  # L' = L is fine (no extension)


def test_a_one_token_original_length_needs_an_explicit_temperature():
    with pytest.raises(UserError, match="original_length must be > 1"):
        _fs(original_max_position_embeddings=1)
    assert _fs(original_max_position_embeddings=1, attention_factor=1.0).scale == 512


def test_huge_numbers_are_user_errors_not_overflows(tmp_path):
    for key, value in (("max_position_embeddings", 10**400), ("rope_theta", 10**400),
                       ("attention_factor", 10**400), ("start_tokens", 2**60)):
        d = _fs().to_dict()
        d[key] = value
        (tmp_path / "f.json").write_text(json.dumps(d), encoding="utf-8")
        with pytest.raises(UserError, match=key):
            FactorSet.load(tmp_path / "f.json")
    d = _fs().to_dict()
    d["long_factor"][1] = 10**400
    (tmp_path / "f.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(UserError, match="long_factor"):
        FactorSet.load(tmp_path / "f.json")
    (tmp_path / "f.json").write_text('{"long_factor": [' + "9" * 5000 + "]}", encoding="utf-8")
    with pytest.raises(UserError):
        FactorSet.load(tmp_path / "f.json")


def test_a_tiny_factor_whose_frequency_overflows_is_refused():
    with pytest.raises(UserError, match="rescaled frequency"):
        _fs(long_factor=[1.0, 1.0, 1e-320, 1.0])


# ------------------------------------------------------------------ fuzzing
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.integers(10**15, 10**500),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.sampled_from([0, -1, 0.0, -0.0, 1, 2]),
)
FACTOR = st.one_of(st.floats(0.5, 64.0), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0]),
                   st.integers(-3, 10**400), st.text(max_size=3), st.none(), st.booleans())
KEYS = ["format_version", "method", "rope_theta", "original_max_position_embeddings", "max_position_embeddings",
        "rotary_dim", "start_tokens", "attention_factor", "long_factor", "short_factor", "provenance"]


@st.composite
def factor_dicts(draw):
    half = draw(st.integers(1, 6))
    L = draw(st.sampled_from([2, 64, 4096]) | st.integers(-5, 10**6))
    d = {"format_version": 1, "method": "longrope", "rope_theta": draw(st.sampled_from([1e4, 5e5, 1.0]) | st.floats()),
         "original_max_position_embeddings": L,
         "max_position_embeddings": draw(st.sampled_from([L, 8 * L if isinstance(L, int) else 1, 1]) | st.integers()),
         "rotary_dim": 2 * half, "start_tokens": draw(st.sampled_from([0, 4]) | st.integers(-2, 10**13)),
         "attention_factor": draw(st.sampled_from([None, 1.0, 1.3])),
         "long_factor": draw(st.lists(st.floats(0.5, 64.0), min_size=half, max_size=half)),
         "short_factor": [1.0] * half, "provenance": {"by": "fuzz"}}
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "unknown", "element", "resize"]))
        key = draw(st.sampled_from(KEYS))
        if action == "set":
            d[key] = draw(JUNK)
        elif action == "drop":
            d.pop(key, None)
        elif action == "unknown":
            d[draw(st.text(min_size=1, max_size=8))] = draw(JUNK)
        elif action == "element" and isinstance(d.get("long_factor"), list) and d["long_factor"]:
            d["long_factor"][draw(st.integers(0, len(d["long_factor"]) - 1))] = draw(FACTOR)
        elif action == "resize":
            d["short_factor"] = draw(st.lists(FACTOR, max_size=8))
    return d


@st.composite
def hf_configs(draw):
    d = draw(factor_dicts())
    params = {"rope_type": draw(st.sampled_from(["longrope", "su", "yarn", "LongRoPE"])),
              "long_factor": d.get("long_factor"), "short_factor": d.get("short_factor"),
              "factor": draw(st.none() | st.floats() | st.integers(-2, 10**400))}
    cfg = {"rope_theta": d.get("rope_theta"), "max_position_embeddings": d.get("max_position_embeddings"),
           "original_max_position_embeddings": d.get("original_max_position_embeddings"),
           draw(st.sampled_from(["rope_scaling", "rope_parameters"])): params,
           "hidden_size": draw(st.sampled_from([None, 64, 8]) | JUNK), "num_attention_heads": draw(st.sampled_from([4, 0]) | JUNK),
           "head_dim": draw(st.none() | JUNK), "partial_rotary_factor": draw(st.none() | JUNK)}
    return {k: v for k, v in cfg.items() if v is not None or draw(st.booleans())}


def _text(obj, draw) -> str:
    text = json.dumps(obj, allow_nan=True)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    return text


@st.composite
def file_contents(draw):
    kind = draw(st.sampled_from(["factors", "hf", "csv", "bytes", "text", "empty"]))
    if kind == "factors":
        data = _text(draw(factor_dicts()), draw)
    elif kind == "hf":
        data = _text(draw(hf_configs()), draw)
    elif kind == "csv":
        cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6),
                          st.sampled_from(["# comment", "", "1,2", "0", "-3"]))
        data = "\n".join(draw(st.lists(cells, max_size=8)))
    elif kind == "bytes":
        raw = draw(st.binary(max_size=120))
        return draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"{"])) + raw, kind
    elif kind == "text":
        data = draw(st.text(max_size=80))
    else:
        data = draw(st.sampled_from(["", " ", "\n\n", BOM]))
    if draw(st.booleans()):
        data = BOM + data
    return data.encode("utf-8", "surrogatepass"), kind


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=file_contents(), suffix=st.sampled_from([".json", ".csv", ".txt"]),
       theta=st.sampled_from([None, 1e4, 0.0, -1.0, float("nan")]), L=st.sampled_from([None, 64, 0, 1, 10**50]),
       Lt=st.sampled_from([None, 256, 32, 64]))
def test_any_factor_file_loads_or_is_a_one_line_user_error(content, suffix, theta, L, Lt):
    data, _kind = content
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"f{suffix}"
        p.write_bytes(data)
        try:
            fs = FactorSet.load(p, rope_theta=theta, original_length=L, target_length=Lt)
        except UserError as e:
            assert str(e) and "\n" not in str(e)
            return
        _usable(fs)


@settings(max_examples=300, deadline=None)
@given(d=factor_dicts())
def test_any_factor_dict_builds_or_is_a_user_error(d):
    try:
        fs = FactorSet.from_dict(d)
    except UserError as e:
        assert "\n" not in str(e)
        return
    _usable(fs)


@settings(max_examples=300, deadline=None)
@given(cfg=hf_configs())
def test_any_hf_config_builds_or_is_a_user_error(cfg):
    try:
        fs = FactorSet.from_hf_config(cfg)
    except UserError as e:
        assert "\n" not in str(e)
        return
    _usable(fs)
