"""The configs of the tools (``inspect``, ``baseline``, ``export``, ``tokenize``, ``generate``): typed like the
runs' (:mod:`longrope.runs`), so their flags, defaults, help and checks come from one field each.

The command line derives from these dataclasses (:func:`longrope.options.add_options`), the commands in
:mod:`longrope.cli` do the work, and a Python caller or a pipeline stage can build and check the same
config (``BaselineConfig(model="tiny", method="pi", target_length="8x", output="pi.json")``). Checks
that need only the values run in ``__post_init__`` and raise :class:`~longrope.errors.ConfigError`
naming the field (the CLI shows its flag); a length may be given as ``8x``, a ratio of the model's
original context, read from the model's config (no weights) only when a ratio is given.

Only :mod:`longrope.options`, :mod:`longrope.groups` and the standard library are imported at module
level (``--help`` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from longrope.errors import ConfigError
from longrope.groups import check_groups, device_option, dtype_option, resolve_lengths, seed_option
from longrope.options import MAX_COUNT, MAX_TOKENS, check_int, check_text, option, output_option, token_count
from longrope.settings import CACHE_POLICIES, SWITCH_MODES, check_decoding

__all__ = ["BaselineConfig", "ExportConfig", "TokenizeConfig", "GenerateConfig", "InspectConfig", "METHODS",
           "MODEL_HELP", "FACTORS_HELP"]

MODEL_HELP = "'tiny', 'smollm2', a Hugging Face folder, a .gguf file or a hub id"
FACTORS_HELP = "factors.json (or a longrope config.json / reference CSV)"
METHODS = ("pi", "ntk", "dynamic-ntk", "yarn", "llama3")  # longrope.rope.BASELINES, kept import-free
_ORIGINAL_HELP = ("L of a reference CSV (default: the model's); for another factor file, its own L when that "
                  "differs from the model's (refused otherwise)")
_METHOD_OPTIONS = "method options"


@dataclass(kw_only=True)
class InspectConfig:
    """``longrope inspect``: a model's RoPE facts as JSON."""

    model: str = option(help=MODEL_HELP, metavar="M", path=True)
    load: bool = option(False, "also load the weights and check the model structure (slower)")
    output: str | None = output_option("also write the JSON to this file", metavar="FILE", default=None)


@dataclass(kw_only=True)
class BaselineConfig:
    """``longrope baseline``: the factors of a closed-form method as a factors.json."""

    model: str = option(help=MODEL_HELP, metavar="M", path=True)
    method: str = option(help="closed-form method", choices=METHODS)
    target_length: int = option(help="target context L' in tokens: 16384, 16k, or 8x the original context L",
                                length=True, metavar="N")
    output: str = output_option("factors.json to write", metavar="FILE")
    original_length: int | None = option(None, "override the original context L, an integer >= 2",
                                         default_text="from the model config", parse=token_count("--original-length"),
                                         metavar="L")
    attention_factor: float | None = option(None, "attention temperature m",
                                            default_text="the method's own; YaRN 0.1 ln s + 1, others 1")
    start_tokens: int = option(0, "retained start tokens n̂", metavar="N")
    beta_fast: float | None = option(None, "yarn: β_fast", default_text="32", group=_METHOD_OPTIONS)
    beta_slow: float | None = option(None, "yarn: β_slow", default_text="1", group=_METHOD_OPTIONS)
    mscale: float | None = option(None, "yarn: DeepSeek-style mscale; m = get_mscale(s, mscale) / "
                                   "get_mscale(s, mscale_all_dim), so give both", group=_METHOD_OPTIONS)
    mscale_all_dim: float | None = option(None, "yarn: DeepSeek-style mscale_all_dim (with --mscale)",
                                           group=_METHOD_OPTIONS)
    length: int | None = option(None, "dynamic-ntk: the current length ℓ (tokens, 16k or a ratio 4x)",
                                default_text="L'", length=True, metavar="N", group=_METHOD_OPTIONS)
    factor: float | None = option(None, "yarn/llama3/dynamic-ntk: scale factor",
                                  default_text="L'/L; Llama 3.1 ships 8", group=_METHOD_OPTIONS)
    low_freq_factor: float | None = option(None, "llama3: low_freq_factor", default_text="1",
                                           group=_METHOD_OPTIONS)
    high_freq_factor: float | None = option(None, "llama3: high_freq_factor", default_text="4",
                                            group=_METHOD_OPTIONS)

    #: the method options passed on to ``make_baseline`` when given
    METHOD_OPTIONS = ("beta_fast", "beta_slow", "length", "factor", "low_freq_factor", "high_freq_factor", "mscale",
                      "mscale_all_dim")

    def __post_init__(self) -> None:
        check_groups(self)
        # 0 used to fall back to the config's L silently; 1 makes ln L = 0 in the attention factor
        check_int(self, "original_length", 2, MAX_TOKENS, optional=True)
        resolve_lengths(self)
        check_int(self, "target_length", 2, MAX_TOKENS)
        check_int(self, "length", 1, MAX_TOKENS, optional=True)
        self.check_start_tokens(self.original_length)  # again with the model's L when it is read

    def check_start_tokens(self, original: int | None) -> None:
        """``start_tokens`` is an integer n̂ a factor set from L = ``original`` (None: not known yet) to
        ``target_length`` may keep."""
        from longrope.rope.values import START_TOKENS_WHY, start_tokens_limit

        limit = start_tokens_limit(self.target_length if original is None else original, self.target_length)
        if isinstance(self.start_tokens, bool) or not isinstance(self.start_tokens, int) \
                or not 0 <= self.start_tokens <= limit:
            bound = (f"the model's L (and at most {limit} for L' = {self.target_length})" if original is None
                     else f"{limit} (L = {original}, L' = {self.target_length})")
            raise ConfigError("start_tokens", "{name} " + f"{self.start_tokens!r} is not an integer from 0 to {bound}: "
                              f"{START_TOKENS_WHY}")

    def factor_set(self, info: Any = None) -> Any:
        """The :class:`~longrope.rope.FactorSet` this config makes, as ``longrope baseline`` writes it and a pipeline
        baseline stage does (one recipe: the method's options, the attention factor, n̂, the provenance).
        ``info``: the model's RoPE facts (:func:`~longrope.models.read_rope_info`; read from ``model``'s config,
        no weights, when not given)."""
        import shlex

        from longrope.errors import UserError
        from longrope.models.loading import read_rope_info
        from longrope.options import config_to_argv
        from longrope.rope import make_baseline

        given = self.method_options()
        info = read_rope_info(self.model, self.original_length) if info is None else info
        if not info.supported:
            raise UserError(info.reason)
        original = info.original_max_position_embeddings if self.original_length is None else self.original_length
        self.check_start_tokens(original)
        if self.method == "yarn" and self.attention_factor is not None:  # YaRN's own option (its mscale)
            given["attention_factor"] = self.attention_factor
        fs = make_baseline(self.method, rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                           original_length=original, target_length=self.target_length, **given)
        changes: dict[str, Any] = {"start_tokens": self.start_tokens}
        if self.attention_factor is not None and self.method != "yarn":
            changes["attention_factor"] = self.attention_factor
        command = shlex.join(["longrope", "baseline", *config_to_argv(self)])  # the fully resolved command
        provenance = {**fs.provenance, "command": command, "model": self.model, "model_type": info.model_type}
        return fs.with_(provenance=provenance, **changes)

    def method_options(self) -> dict:
        """The method options given (not None), checked to apply to ``method``."""
        from longrope.rope import baseline_options

        given = {k: getattr(self, k) for k in self.METHOD_OPTIONS if getattr(self, k) is not None}
        wrong = sorted(k for k in given if k not in set(baseline_options(self.method)))
        if wrong:
            raise ConfigError((*wrong, "method"), ", ".join(f"{{name{i}}}" for i in range(len(wrong)))
                              + " does not apply to {name" + str(len(wrong)) + "} " + self.method)
        return given


@dataclass(kw_only=True)
class ExportConfig:
    """``longrope export``: the model with its factors, as a Hugging Face folder or a GGUF file."""

    model: str = option(help=MODEL_HELP, metavar="M", path=True)
    factors: str = option(help=FACTORS_HELP + " to export", metavar="F", path=True, tags={"once": True})
    output: str = output_option("output folder (hf: must not exist or be empty) or file (gguf)", metavar="OUT")
    format: str = option("hf", "hf: a Hugging Face folder; gguf: one llama.cpp file", choices=("hf", "gguf"))
    dtype: str | None = option(None, "dtype of the saved weights: float32, bfloat16, float16",
                               default_text="hf: as loaded, float32 for GGUF sources; gguf: float16 — gguf takes "
                                            "float16/float32")
    original_length: int | None = option(None, _ORIGINAL_HELP, parse=token_count("--original-length"), metavar="L")
    target_length: int | None = option(None, "reference CSV factors only: L' (16k, or 8x L: the model's, or --original-length)",
                                       length=True, metavar="N")
    overwrite: bool = option(False, "replace an existing exported model (a model folder or GGUF file; a run folder or other files are refused)")
    quiet: bool = option(False, "no progress bars (transformers' loading and writing bars)")

    def __post_init__(self) -> None:
        check_groups(self)
        check_int(self, "original_length", 2, MAX_TOKENS, optional=True)
        resolve_lengths(self)
        check_int(self, "target_length", 2, MAX_TOKENS, optional=True)


@dataclass(kw_only=True)
class TokenizeConfig:
    """``longrope tokenize``: corpora → memory-mapped token shards with a verified index."""

    tokenizer: str = option(help='tokenizer: "tiny", "smollm2", a model folder, a .gguf file or a hub id',
                            metavar="M", path=True)
    input: tuple[str, ...] = option(help="files, folders or dataset names (repeatable); search=SRC / heldout=SRC / "
                                         "train=SRC pins a role", multiple=True, metavar="SRC",
                                    path=True)
    output: str = output_option("shard folder to write", metavar="DIR")
    split: str | None = option(None, "hub dataset split", default_text="train")
    text_field: str = option("text", "text field of .jsonl/.parquet/hub rows")
    id_field: str | None = option(None, "optional id field used in document names")
    shard_tokens: int = option(1 << 27, "most tokens per shard file (2048, 64k ...); documents are never split: a "
                                        "longer one fills a shard alone", default_text="2^27",
                               parse=token_count("--shard-tokens"), metavar="N")
    force: bool = option(False, "rebuild even if the folder is up to date")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        check_groups(self)
        if not self.input:
            raise ConfigError("input", "{name} is empty; give files, folders or dataset names")
        check_int(self, "shard_tokens", 1, MAX_COUNT)
        for name in ("tokenizer", "text_field", "split", "id_field"):  # as tokenize_corpus checks them
            check_text(self, name, optional=name in ("split", "id_field"))
        from longrope.data.sources import check_fields

        check_fields(self.text_field, self.id_field)

    def tokenize(self, warn: Any) -> Any:
        """Tokenize as ``longrope tokenize`` does (and a pipeline tokenize stage): the inputs are checked before
        the tokenizer loads; each file skipped is said with ``warn`` (the first 20, then their count). Returns the
        :class:`~longrope.data.tokenize.TokenizeReport`."""
        from longrope.data import tokenize_corpus
        from longrope.data.sources import resolve_sources
        from longrope.data.tokenizer_loading import load_tokenizer

        resolve_sources(list(self.input), split=self.split, text_field=self.text_field, id_field=self.id_field)  # bad inputs are refused before the tokenizer loads
        report = tokenize_corpus(load_tokenizer(self.tokenizer), list(self.input), self.output,
                                 tokenizer_name=str(self.tokenizer), split=self.split, text_field=self.text_field,
                                 id_field=self.id_field, shard_tokens=self.shard_tokens, force=self.force,
                                 progress=not self.quiet)
        for s in report.skipped[:20]:
            warn(f"skipped {s['path']}: {s['reason']}")
        if len(report.skipped) > 20:
            warn(f"{len(report.skipped) - 20} more skipped (see meta.json)")
        return report


@dataclass(kw_only=True)
class GenerateConfig:
    """``longrope generate``: greedy (or seeded sampled) generation with the factors installed."""

    model: str = option(help=MODEL_HELP, metavar="M", path=True)
    factors: str = option(help=FACTORS_HELP + " to install", metavar="F", path=True, tags={"once": True})
    prompt: str | None = option(None, "the prompt text (this or --prompt-file)")
    prompt_file: str | None = option(None, "a UTF-8 text file holding the prompt ('-': standard input)",
                                     metavar="FILE", path=True)
    max_new_tokens: int = option(help="tokens to generate (64, 1k ...)", parse=token_count("--max-new-tokens"),
                                 metavar="N")
    chat_template: bool = option(False, "send the prompt as a user message through the tokenizer's chat template "
                                        "(for instruct models such as smollm2)")
    mode: str = option("switch", "switch: short factors up to L, long beyond; long: long from the start",
                       choices=SWITCH_MODES)
    cache_policy: str | None = option(None, "--mode switch: what happens to the KV cache at the switch",
                                      choices=CACHE_POLICIES, default_text="reprefill: exact")
    sample: bool = option(False, "sample instead of greedy decoding")
    temperature: float | None = option(None, "with --sample: temperature", default_text="1")
    top_p: float | None = option(None, "with --sample: nucleus sampling threshold", default_text="1")
    seed: int | None = seed_option("with --sample: sampling seed", optional=True)
    ignore_eos: bool = option(False, "do not stop at the end-of-sequence token")
    original_length: int | None = option(None, _ORIGINAL_HELP, parse=token_count("--original-length"), metavar="L")
    target_length: int | None = option(None, "reference CSV factors only: L' (16k, or 8x L: the model's, or --original-length)",
                                       length=True, metavar="N")
    dtype: str = dtype_option()
    device: str = device_option()
    json: bool = option(False, "print prompt/new token ids and text as JSON")

    def __post_init__(self) -> None:
        check_groups(self)  # the seed among them
        if (self.prompt is None) == (self.prompt_file is None):
            raise ConfigError(("prompt", "prompt_file"), "give one of {name0} and {name1}")
        from longrope.data.sources import argument_text

        if isinstance(self.prompt, str):
            text = argument_text(self.prompt)
            if text is None:  # bytes the shell passed that are not UTF-8
                raise ConfigError(("prompt", "prompt_file"), "{name0} holds bytes that are not UTF-8 text (a "
                                  "tokenizer cannot encode them); give UTF-8 text, or a UTF-8 file with {name1}")
            self.prompt = text
        check_int(self, "max_new_tokens", 1, MAX_TOKENS)  # as generate() checks it
        # the one rule of which decoding settings apply together and their bounds, as generate() makes it
        check_decoding(self.sample, self.temperature, self.top_p, self.seed, self.mode, self.cache_policy,
                       fields=("sample", "temperature", "top_p", "seed", "mode", "cache_policy"))
        check_int(self, "original_length", 2, MAX_TOKENS, optional=True)
        resolve_lengths(self)
        check_int(self, "target_length", 2, MAX_TOKENS, optional=True)
