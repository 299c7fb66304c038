"""Train the embedded tiny Llama from scratch: BPE tokenizer, model, loop, evaluation, export.

Pure functions plus one config dataclass; :mod:`longrope.runs.train_tiny` wires them together.
The model is a plain ``LlamaForCausalLM`` with standard RoPE trained at a short context (256), so
that everything beyond 256 tokens is context extension, the thing this project studies. Training
windows always start with BOS at position 0 (the evaluation protocol's layout) and come from random
offsets of the training books, so the model sees every position 0..255 with real text. A share of
passkey sequences (standard wording, 5-digit keys, within the trained window) teaches it to
retrieve, so that a demo can show which scaling method keeps that ability at 8x.

Determinism: all randomness flows from ``TinyConfig.seed`` through one ``numpy.random.Generator``
(data) and ``torch.manual_seed`` at init (weights, before any other torch RNG use); a checkpoint
stores the model, optimizer, step, log and the generator state, so a resumed run continues the
same sequence of batches.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`) are one ``.safetensors`` file:
the model's and the optimizer's tensors, plus a JSON document in the safetensors header metadata
(format tag, config and fingerprint, step, elapsed time, training log, the numpy generator's
state and the optimizer's hyper-parameters). Nothing is unpickled: a checkpoint from before this
format (a ``torch.save`` pickle, ``.pt``) is refused with a one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longrope.embedded.passkey import NEEDLE, PasskeyPieces, answer_ids, build_prompt
from longrope.errors import ConfigError, UserError
from longrope.io import atomic_write, write_text
from longrope.options import option
from longrope.settings import PASSKEY_DEPTHS

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


@dataclass
class TinyConfig:
    """Everything that determines the trained model (recorded verbatim in ``training.json``)."""

    seed: int = option(0, "seed of the weight init (torch) and the batch sampler (numpy)")
    vocab_size: int = option(4096, "BPE vocabulary including the 3 special tokens")
    hidden_size: int = option(256, "hidden size")
    num_layers: int = option(4, "transformer layers")
    num_heads: int = option(4, "attention heads; head_dim = hidden_size / num_heads (64 gives 32 RoPE pairs)")
    intermediate_size: int = option(768, "MLP size")
    context: int = option(256, "training length L in tokens (the model's original_max_position_embeddings)")
    rope_theta: float = option(10000.0, "RoPE base")
    batch_size: int = option(16, "sequences per step")
    max_steps: int = option(3000, "training steps (also the cosine schedule's length)")
    time_budget_s: float | None = option(None, "stop early (checkpointed, recorded as stopped_early) after this "
                                               "many seconds of training; where it stops depends on the machine, "
                                               "--stop-at-step replays such a run exactly", flag="--time-budget",
                                         metavar="S")
    stop_at_step: int | None = option(None, "stop after this step without changing the schedule (which still "
                                            "spans --max-steps)")
    lr: float = option(2e-3, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a share of the peak (cosine floor)")
    warmup_steps: int = option(100, "linear warm-up steps")
    weight_decay: float = option(0.1, "AdamW weight decay of the matrices")
    grad_clip: float = option(1.0, "gradient-norm clip")
    passkey_fraction: float = option(0.1, "share of training sequences that are passkey prompts with their answer")
    passkey_answer_weight: float = option(1.0, "loss weight of the answer's key digits in passkey rows (1 = the "
                                               "plain LM loss)")
    copy_fraction: float = option(0.0, "share of training sequences that are synthetic copy rows: a random string "
                                       "after BOS, book text, then the same string again (only the second copy is "
                                       "a target); they make induction heads form")
    copy_max_length: int = option(32, "longest random string of a copy row (5..this many tokens; capped by half "
                                      "the context)")
    induction_steps: int = option(0, "the first N steps train on induction rows only (a random string of 4..40 "
                                     "tokens repeated to fill the row; grows copy heads in a few hundred steps)")
    induction_segments: int = option(1, "induction batches hold batch_size x this rows of context / this tokens")
    eval_passkey_trials: int = option(0, "passkey prompts near L scored at each periodic evaluation (0 = none; "
                                         "logging only)")
    tokenizer: str | None = option(None, "reuse this tokenizer (a folder with tokenizer.json, or the file) "
                                         "instead of training one", metavar="PATH")
    init_from: str | None = option(None, "start from the weights of this train-tiny checkpoint (.safetensors; "
                                         "its optimizer and schedule do not carry over; old .pt pickles are "
                                         "refused, never unpickled)", metavar="CKPT")
    eval_every: int = option(250, "steps between periodic evaluations")
    eval_windows: int = option(24, "held-out windows of L tokens scored at each periodic evaluation (logging only)")
    checkpoint_every_s: float = option(120.0, "seconds between checkpoints", flag="--checkpoint-every", metavar="S")
    threads: int = option(1, "torch threads")
    tie_embeddings: bool = option(True, "tie the input embedding and the LM head")

    def __post_init__(self) -> None:
        positive = ["vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                    "context", "batch_size", "max_steps", "eval_every", "eval_windows", "threads"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(name, "{name} must be >= 1, got " + str(getattr(self, name)))
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(("hidden_size", "num_heads"), f"{{name0}} {self.hidden_size} must split into "
                                                            f"{{name1}} {self.num_heads} heads of even size")
        if self.vocab_size < 300:
            raise ConfigError("vocab_size", f"{{name}} {self.vocab_size} is below the 256 bytes + specials a "
                                            "byte-level BPE needs; use >= 300")
        if self.context < 64:
            raise ConfigError("context", f"{{name}} {self.context} is too short for a passkey prompt; use >= 64")
        if not 0.0 <= self.passkey_fraction < 1.0:
            raise ConfigError("passkey_fraction", "{name} must be in [0, 1), got " + str(self.passkey_fraction))
        if not 0.0 <= self.copy_fraction < 1.0 or self.passkey_fraction + self.copy_fraction >= 1.0:
            raise ConfigError(("copy_fraction", "passkey_fraction"),
                              "{name0} must be in [0, 1) with {name1} + {name0} < 1, got "
                              f"{self.copy_fraction} and {self.passkey_fraction}")
        if self.copy_max_length < 5:
            raise ConfigError("copy_max_length", "{name} must be >= 5, got " + str(self.copy_max_length))
        if not 0 <= self.induction_steps <= self.max_steps:
            raise ConfigError(("induction_steps", "max_steps"), "{name0} must be in [0, {name1}], got "
                              + str(self.induction_steps))
        if not 1 <= self.induction_segments <= self.context // 16:
            raise ConfigError("induction_segments", "{name} must be in [1, context / 16], got "
                              + str(self.induction_segments))
        if self.eval_passkey_trials < 0:
            raise ConfigError("eval_passkey_trials", "{name} must be >= 0, got " + str(self.eval_passkey_trials))
        if self.passkey_answer_weight <= 0:
            raise ConfigError("passkey_answer_weight", "{name} must be > 0, got " + str(self.passkey_answer_weight))
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(("lr", "min_lr_ratio"), "{name0} must be > 0 and {name1} in [0, 1]")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", "{name} must be >= 0, got " + str(self.warmup_steps))
        if self.stop_at_step is not None and not 1 <= self.stop_at_step <= self.max_steps:
            raise ConfigError(("stop_at_step", "max_steps"), "{name0} must be in [1, {name1}], got "
                              + str(self.stop_at_step))
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("time_budget_s", "{name} must be > 0 seconds, got " + str(self.time_budget_s))

    def fingerprint(self) -> str:
        """Hash of the fields that shape the run (not the budget/checkpoint cadence)."""
        d = dataclasses.asdict(self)
        for k in ("time_budget_s", "stop_at_step", "checkpoint_every_s", "threads"):
            d.pop(k)
        # Options added later are left out at their neutral values, so that older checkpoints
        # (the shipped run's first stage among them) keep their fingerprints.
        for k, neutral in (("passkey_answer_weight", 1.0), ("init_from", None), ("copy_fraction", 0.0),
                           ("copy_max_length", 32), ("eval_passkey_trials", 0), ("induction_steps", 0),
                           ("induction_segments", 1), ("tokenizer", None)):
            if d[k] == neutral:
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Train a byte-level BPE (``<unk>``=0, ``<s>``=1, ``</s>``=2) and wrap it for transformers.

    Digits are split one per token (as Llama's tokenizer does): books hold few numbers, and a
    5-digit passkey must be copyable digit by digit. The post-processor prepends BOS, so
    ``tokenizer(text)`` gives the BOS-first layout the model was trained on.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        model_max_length=1 << 30,  # long-context tool: no truncation warnings at 2M tokens
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path, vocab_size: int):
    """A saved tokenizer (a folder holding ``tokenizer.json``, or that file) for reuse by a later
    training stage; its vocabulary must have ``vocab_size`` entries (the model's embedding rows)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError("tokenizer", f"{{name}} {path}: no tokenizer.json there; give a tiny model folder or its "
                                       "tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(file), bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                  model_max_length=1 << 30, clean_up_tokenization_spaces=False)
    if len(tok) != vocab_size:
        raise ConfigError(("tokenizer", "vocab_size"), f"{{name0}} {path} has {len(tok)} tokens but {{name1}} is "
                                                       f"{vocab_size}; make them agree")
    return tok


def encoder(tokenizer) -> Callable[[str], list[int]]:
    """``text -> ids`` without special tokens, via the fast backend."""
    backend = tokenizer.backend_tokenizer

    def encode(text: str) -> list[int]:
        return backend.encode(text, add_special_tokens=False).ids

    return encode


def encode_docs(tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each document (no BOS), as int32 arrays."""
    out = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in out]


# ----------------------------------------------------------------------------------------------
# Model


def build_model(cfg: TinyConfig, tokenizer):
    """A fresh ``LlamaForCausalLM`` for ``cfg`` (weights from ``torch.manual_seed(cfg.seed)``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.context,
        rope_theta=cfg.rope_theta,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="sdpa",
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


# ----------------------------------------------------------------------------------------------
# Data


class BatchSampler:
    """Random BOS-first windows of the training books, with a share of passkey sequences.

    A book is picked with probability proportional to its length (so every training token is
    equally likely), then a uniform offset. A passkey sequence has a random total length in
    [min, context], a random depth and a random 5-digit key; its answer " K." follows, and the rest
    of the window is more filler (predictable, harmless), so retrieval is practised at every
    position of the trained window, not only at its end.
    """

    def __init__(self, docs: list[np.ndarray], tokenizer, cfg: TinyConfig, rng: np.random.Generator):
        self.docs = [d for d in docs if len(d) >= cfg.context]
        if not self.docs:
            raise UserError(f"no training document has {cfg.context} tokens; give longer texts")
        lengths = np.array([len(d) - cfg.context + 2 for d in self.docs], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.cfg = cfg
        self.rng = rng
        self.bos = tokenizer.bos_token_id
        self.encode = encoder(tokenizer)
        self.pieces = PasskeyPieces.from_tokenizer(self.encode)
        self.min_passkey = (1 + len(self.pieces.intro) + len(self.encode(NEEDLE.format(key=12345)))
                            + len(self.pieces.question) + 8)
        if self.min_passkey + 8 > cfg.context:
            self.min_passkey = None  # context too short for passkeys (only in microscopic tests)
        self.digits = np.asarray([self.encode(str(d))[0] for d in range(10)], dtype=np.int64)
        self.vocab = len(tokenizer)

    def window(self) -> np.ndarray:
        c = self.cfg.context
        doc = self.docs[self.rng.choice(len(self.docs), p=self.p)]
        off = int(self.rng.integers(0, len(doc) - (c - 1) + 1))
        return np.concatenate([[self.bos], doc[off : off + c - 1]])

    def passkey(self) -> np.ndarray:
        return self._passkey()[0]

    def _passkey(self) -> tuple[np.ndarray, int]:
        """(ids, index of the answer's first token)."""
        c = self.cfg.context
        key = int(self.rng.integers(10000, 100000))
        length = int(self.rng.integers(self.min_passkey, c - 4 + 1))
        ids = build_prompt(self.pieces, self.encode, length=length, key=key,
                           depth=float(self.rng.random()), bos_id=self.bos)
        answer_at = len(ids)
        ids += answer_ids(self.encode, key)
        while len(ids) < c:
            ids += self.pieces.filler
        return np.asarray(ids[:c]), answer_at

    def _copy(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, target weights) of a copy row: BOS, a random string S of 5..``copy_max_length`` tokens (half the
        rows digits only, like a passkey; the others any non-special token), book text of random
        length, S again, more text. Target weights: 0 on S's first copy and on the first token of
        its second copy (neither is predictable), ``passkey_answer_weight`` on the rest of the
        second copy, 1 on the text. The gap spans the whole window, so copying is practised at
        every distance up to the context."""
        c = self.cfg.context
        n = int(self.rng.integers(5, max(5, min(self.cfg.copy_max_length, (c - 2) // 2)) + 1))
        if self.rng.random() < 0.5:
            s = self.digits[self.rng.integers(0, 10, n)]
        else:
            s = self.rng.integers(3, self.vocab, n)
        gap = int(self.rng.integers(0, c - 1 - 2 * n + 1))
        text = self.window()[1:]
        ids = np.concatenate([[self.bos], s, text[:gap], s, text[gap:]])[:c]
        w = np.ones(c, dtype=np.float32)
        w[1 : 1 + n] = 0.0
        second = 1 + n + gap
        w[second] = 0.0
        w[second + 1 : second + n] = self.cfg.passkey_answer_weight
        return ids, w

    def _induction(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, target weights) of one induction row of ``length`` tokens: BOS, then a random
        string S of 4..40 non-special tokens repeated to the end. Weights: 0 on S's first copy and
        on the first token of its second copy (not predictable), 1 on the rest, which only
        copying can predict."""
        n = int(self.rng.integers(4, max(4, min(40, (length - 1) // 2)) + 1))
        s = self.rng.integers(3, self.vocab, n)
        ids = np.concatenate([[self.bos], np.tile(s, -(-(length - 1) // n))[: length - 1]])
        w = np.zeros(length, dtype=np.float32)
        w[n + 2 :] = 1.0
        return ids, w

    def induction_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """([batch * k, context / k] ids, same-shape weights) of induction rows only, where k is
        ``induction_segments``: the same tokens per step as a text batch, in k times as many
        shorter rows (more distinct strings per step: the copy heads form in fewer steps)."""
        k = self.cfg.induction_segments
        rows, weights = zip(*(self._induction(self.cfg.context // k) for _ in range(self.cfg.batch_size * k)))
        return np.stack(rows).astype(np.int64), np.stack(weights)

    def _row(self) -> tuple[np.ndarray, np.ndarray]:
        """One row and its target weights; draws passkey / copy / text by their fractions."""
        w = np.ones(self.cfg.context, dtype=np.float32)
        if self.min_passkey is None:
            return self.window(), w
        u = self.rng.random()
        if u < self.cfg.passkey_fraction:
            ids, at = self._passkey()
            w[at + 1 : at + 6] = self.cfg.passkey_answer_weight  # " " then 5 digits, then "."
            return ids, w
        if u < self.cfg.passkey_fraction + self.cfg.copy_fraction:
            return self._copy()
        return self.window(), w

    def batch(self) -> np.ndarray:
        """[batch, context] int64 ids."""
        return self.weighted_batch()[0]

    def weighted_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """([batch, context] int64 ids, [batch, context] float32 loss weights of each token as a
        target): 1 everywhere except the 5 key digits of passkey answers (``passkey_answer_weight``).
        Copy rows (``copy_fraction``) carry their own weights (see :meth:`_copy`).
        Draws the same random numbers as :meth:`batch`, so both give the same ids."""
        rows, weights = zip(*(self._row() for _ in range(self.cfg.batch_size)))
        return np.stack(rows).astype(np.int64), np.stack(weights)


def lr_at(step: int, cfg: TinyConfig) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------------------------
# Evaluation: the shared stack (longrope.evaluate, longrope.models, longrope.rope), so the numbers
# in training.json come from the same code as ``longrope eval``.

#: The passkey "at L" is measured with prompts this many tokens shorter than L, so that the prompt
#: and the decoded answer (at most ``evaluate.passkey.answer_budget`` = 12 tokens) stay inside
#: the trained window.
PASSKEY_MARGIN = 12


def eval_spans(docs: list[np.ndarray], length: int, per_doc: int) -> list[np.ndarray]:
    """``per_doc`` evenly spaced spans of ``length - 1`` tokens per document (the windows' text)."""
    spans = []
    for d in docs:
        room = len(d) - (length - 1)
        if room < 0:
            continue
        for k in range(per_doc):
            off = int(room * k / max(1, per_doc - 1)) if per_doc > 1 else 0
            spans.append(np.asarray(d[off : off + length - 1]))
    return spans


def pieces(spans: list[np.ndarray], length: int) -> list[np.ndarray]:
    """Each span cut into consecutive pieces of ``length - 1`` tokens (a remainder is dropped), so a
    PPL at the trained length covers the same text as the long windows."""
    return [s[k : k + length - 1] for s in spans for k in range(0, len(s) - (length - 1) + 1, length - 1)]


def heldout_ppl(model, spans: list[np.ndarray], length: int, bos_id: int | None) -> float:
    """Token-weighted PPL of ``BOS + span`` windows (``longrope.evaluate.evaluate_perplexity``)."""
    from longrope.evaluate import evaluate_perplexity

    was_training = model.training
    res = evaluate_perplexity(model, spans, length, bos_id=bos_id)
    model.train(was_training)
    return res.ppl


def passkey_rate(model, tokenizer, length: int, trials: int, seed: int) -> float | None:
    """Passkey accuracy at ``length`` (``longrope.evaluate.passkey_accuracy``: 5 depths, about
    ``trials`` keys in all); None when ``length`` cannot hold the standard prompt."""
    from longrope.evaluate.passkey import build_passkey_prompt, passkey_accuracy

    try:
        build_passkey_prompt(tokenizer, length, 12345, 0.5, bos_id=tokenizer.bos_token_id)
    except UserError:
        return None
    was_training = model.training
    res = passkey_accuracy(model, tokenizer, [length], depths=PASSKEY_DEPTHS,
                           trials=max(1, trials // 5), seed=seed, bos_id=tokenizer.bos_token_id)
    model.train(was_training)
    return res.accuracy


def report(model, tokenizer, heldout: list[np.ndarray], cfg: TinyConfig, *, per_doc: int = 4,
           target: int | None = None, passkey_trials: int = 20) -> dict:
    """Held-out PPL at L (same text as the 8x spans), at 8x unscaled / PI / NTK / YaRN, and passkey.

    Factors are installed with :func:`longrope.models.install_factors` and the baselines come from
    :func:`longrope.rope.make_baseline`: the numbers are what ``longrope eval`` gives."""
    from longrope.evaluate.suite import factor_switch
    from longrope.rope import make_baseline

    target = target or 8 * cfg.context
    bos = tokenizer.bos_token_id
    spans = eval_spans(heldout, target, per_doc)
    out: dict = {"target_length": target, "heldout_spans": len(spans),
                 "protocol": f"BOS + {target - 1} tokens at {per_doc} evenly spaced offsets per held-out doc; at "
                             f"{cfg.context} the same text in BOS-first pieces of {cfg.context}; token-weighted "
                             f"NLL (longrope.evaluate); passkey: longrope.evaluate.passkey_accuracy, 5 depths, at "
                             f"{cfg.context} with prompts of {cfg.context - PASSKEY_MARGIN} tokens so the answer "
                             "stays inside the trained window"}
    if not spans:
        out["note"] = f"no held-out document has {target} tokens"
        return out
    model.eval()
    out[f"ppl_{cfg.context}"] = heldout_ppl(model, pieces(spans, cfg.context), cfg.context, bos)
    out[f"ppl_{target}_unscaled"] = heldout_ppl(model, spans, target, bos)
    sets = [(m, make_baseline(m, rope_theta=cfg.rope_theta, rotary_dim=cfg.hidden_size // cfg.num_heads,
                              original_length=cfg.context, target_length=target)) for m in ("pi", "ntk", "yarn")]
    with factor_switch(model, sets) as use:
        for method, fs in sets:
            use(fs)
            out[f"ppl_{target}_{method}"] = heldout_ppl(model, spans, target, bos)
            if passkey_trials:
                out[f"passkey_{target}_{method}"] = passkey_rate(model, tokenizer, target, passkey_trials, cfg.seed + 1)
    if passkey_trials:
        out[f"passkey_{cfg.context}"] = passkey_rate(model, tokenizer, cfg.context - PASSKEY_MARGIN, passkey_trials,
                                                     cfg.seed + 1)
        out[f"passkey_{target}_unscaled"] = passkey_rate(model, tokenizer, target, passkey_trials, cfg.seed + 1)
    return out


# ----------------------------------------------------------------------------------------------
# Checkpoints: safetensors (tensors) + JSON (everything else), never a pickle

CHECKPOINT_FORMAT = "longrope-train-tiny-checkpoint"
CHECKPOINT_VERSION = 1
_MODEL_PREFIX = "model."
_OPT_PREFIX = "optimizer."


def save_checkpoint(path: Path, model, opt, state: dict) -> Path:
    """Write model + optimizer tensors and the JSON-able ``state`` atomically to ``path``.

    ``state`` holds plain JSON values (config, fingerprint, step, log, rng state, elapsed time).
    Tensors are cloned: a tied embedding shares storage with the LM head, which safetensors
    (rightly) refuses to write twice; loading copies the same values into both.
    """
    import torch
    from safetensors.torch import save

    tensors = {_MODEL_PREFIX + k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    scalars: dict[str, dict] = {}
    for idx, entry in opt_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPT_PREFIX}{idx}.{key}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state,
           "optimizer": {"param_groups": opt_state["param_groups"], "scalars": scalars}}
    blob = save(tensors, metadata={"longrope": json.dumps(doc)})
    return atomic_write(path, lambda f: f.write(blob), mode="wb")


def _is_pickle(head: bytes) -> bool:
    """``torch.save`` output: a zip archive (PyTorch ≥ 1.6) or a bare pickle (protocol 2+)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_checkpoint(path: Path, *, what: str) -> tuple[dict, dict]:
    """``(tensors, state)`` of a checkpoint written by :func:`save_checkpoint`; never unpickles.

    ``what`` names the file in messages ("--init-from" or "checkpoint"). Old pickle checkpoints,
    other files and damaged ones are a one-line :class:`UserError` saying what to do.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    if _is_pickle(head):
        raise UserError(f"{what} {path} is an old pickle-format checkpoint (.pt), which longrope no longer loads "
                        "because unpickling a file can run code; re-create it with this version of train-tiny "
                        "(it writes .safetensors checkpoints), or delete it / pass --no-resume to start over")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        state = json.loads(meta["longrope"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} {path} is not a train-tiny checkpoint ({first}); give a .safetensors checkpoint "
                        "written by train-tiny") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT \
            or state.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{what} {path} is not a version-{CHECKPOINT_VERSION} train-tiny checkpoint; give one "
                        "written by this version of train-tiny")
    missing = [k for k in ("fingerprint", "step", "log") if k not in state]
    if missing:
        raise UserError(f"{what} {path} lacks {', '.join(missing)}; it is damaged, re-create it")
    return tensors, state


def _load_model_tensors(model, tensors: dict, path: Path, what: str) -> None:
    weights = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:160]
        raise UserError(f"{what} {path} does not fit this model's shape ({first}); use the same --hidden-size, "
                        "--num-layers, --num-heads, --intermediate-size and --vocab-size as the run that wrote it") \
            from None


def _load_optimizer(opt, tensors: dict, state: dict, path: Path) -> None:
    saved = state.get("optimizer") or {}
    groups = saved.get("param_groups")
    if not isinstance(groups, list):
        raise ConfigError("resume", f"checkpoint {path} has no optimizer state; it is damaged, delete it or pass {{name}}")
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])  # JSON has no tuples; AdamW writes them as one
    per: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(_OPT_PREFIX):
            idx, key = k[len(_OPT_PREFIX):].split(".", 1)
            per.setdefault(int(idx), {})[key] = v
    for idx, entry in (saved.get("scalars") or {}).items():
        per.setdefault(int(idx), {}).update(entry)
    try:
        opt.load_state_dict({"state": per, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"checkpoint {path}: optimizer state does not fit this model ({e}); delete it or pass "
                        "--no-resume") from None


# ----------------------------------------------------------------------------------------------
# The loop


def train(cfg: TinyConfig, tokenizer, train_docs: list[np.ndarray], eval_docs: list[np.ndarray],
          *, checkpoint: Path | None = None, log_path: Path | None = None,
          progress: Callable[[dict], None] | None = None) -> tuple[object, list[dict], dict]:
    """Train from scratch (or resume ``checkpoint``); return (model, log records, run summary).

    Checkpoints (model + optimizer + step + sampler RNG + log) are written atomically every
    ``checkpoint_every_s`` and at the end, so a killed run loses at most that much work. The
    log is rewritten atomically as JSON lines at each record.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    model = build_model(cfg, tokenizer)
    init_info = _warm_start(model, cfg)
    opt = _optimizer(model, cfg)
    rng = np.random.default_rng(cfg.seed)
    step, log, elapsed_before = _resume(checkpoint, cfg, model, opt, rng)
    sampler = BatchSampler(train_docs, tokenizer, cfg, rng)
    periodic = eval_spans(eval_docs, cfg.context, max(1, cfg.eval_windows // max(1, len(eval_docs))))

    def write_checkpoint() -> None:
        if checkpoint is None:
            return
        save_checkpoint(checkpoint, model, opt, {
            "fingerprint": cfg.fingerprint(), "config": dataclasses.asdict(cfg), "step": step, "log": log,
            "rng": rng.bit_generator.state,  # PCG64: {"bit_generator", "state": {"state", "inc"}, ...}, ints
            "elapsed_s": elapsed_before + time.perf_counter() - t_start})

    def record(entry: dict) -> None:
        log.append(entry)
        if log_path is not None:
            write_text(log_path, "".join(json.dumps(e) + "\n" for e in log))
        if progress is not None:
            progress(entry)

    t_start = time.perf_counter()
    last_ckpt = t_start
    running, n_running, tokens_per_step = 0.0, 0, cfg.batch_size * (cfg.context - 1)
    stopped_early = False
    model.train()
    while step < cfg.max_steps:
        elapsed = elapsed_before + time.perf_counter() - t_start
        if ((cfg.time_budget_s is not None and time.perf_counter() - t_start >= cfg.time_budget_s)
                or (cfg.stop_at_step is not None and step >= cfg.stop_at_step)):
            stopped_early = True
            break
        lr = lr_at(step, cfg)
        induction = step < cfg.induction_steps
        loss, gnorm = _train_step(model, opt, sampler, cfg, lr=lr, induction=induction)
        step += 1
        running += loss
        n_running += 1
        if step % cfg.eval_every == 0 or step in (cfg.max_steps, cfg.stop_at_step, cfg.induction_steps):
            entry = {"step": step, "phase": "induction" if induction else "mixed", "lr": lr,
                     "train_loss": running / n_running, "grad_norm": gnorm,
                     "tokens": step * tokens_per_step, "elapsed_s": round(elapsed, 1),
                     **_periodic_scores(model, tokenizer, cfg, periodic)}
            model.train()
            running, n_running = 0.0, 0
            record(entry)
        if time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s:
            write_checkpoint()
            last_ckpt = time.perf_counter()
    write_checkpoint()
    summary = {"steps": step, "tokens_seen": step * tokens_per_step, "stopped_early": stopped_early,
               "train_seconds": round(elapsed_before + time.perf_counter() - t_start, 1)}
    if init_info is not None:
        summary["init_from"] = init_info
    model.eval()
    return model, log, summary


def _warm_start(model, cfg: TinyConfig) -> dict | None:
    """Load ``cfg.init_from`` (a train-tiny checkpoint) into ``model``; what the summary records of it."""
    if cfg.init_from is None:
        return None
    init_path = Path(cfg.init_from)
    if not init_path.is_file():
        raise ConfigError("init_from", f"{{name}} {init_path} is not a file; give a train-tiny checkpoint "
                                       "(.safetensors)")
    tensors, init = load_checkpoint(init_path, what="--init-from")
    _load_model_tensors(model, tensors, init_path, "--init-from")
    return {"path": str(init_path), "sha256": hashlib.sha256(init_path.read_bytes()).hexdigest(),
            "fingerprint": init["fingerprint"], "config": init.get("config"), "step": init["step"],
            "log": init["log"]}


def _optimizer(model, cfg: TinyConfig):
    """AdamW with weight decay on the matrices only."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )


def _resume(checkpoint: Path | None, cfg: TinyConfig, model, opt, rng: np.random.Generator) -> tuple[int, list, float]:
    """Restore model, optimizer and generator from ``checkpoint`` when it exists; ``(step, log, elapsed s)``."""
    if checkpoint is None or not checkpoint.exists():
        return 0, [], 0.0
    tensors, state = load_checkpoint(checkpoint, what="checkpoint")
    if state["fingerprint"] != cfg.fingerprint():
        raise UserError(f"checkpoint {checkpoint} is from a different config; delete it or pass "
                        "--no-resume")
    _load_model_tensors(model, tensors, checkpoint, "checkpoint")
    _load_optimizer(opt, tensors, state, checkpoint)
    try:
        rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {checkpoint} has no usable generator state ({e}); delete it or pass "
                        "--no-resume") from None
    return int(state["step"]), list(state["log"]), float(state.get("elapsed_s", 0.0))


def _train_step(model, opt, sampler: BatchSampler, cfg: TinyConfig, *, lr: float, induction: bool) -> tuple[float, float]:
    """One optimizer step at learning rate ``lr``; ``(loss, gradient norm before clipping)``. Plain LM loss
    unless answer tokens are weighted, copies are mixed in or the induction phase runs."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr
    if cfg.passkey_answer_weight == 1.0 and cfg.copy_fraction == 0.0 and not induction:
        x = torch.from_numpy(sampler.batch())  # [batch, context]
        loss = model(input_ids=x, labels=x).loss
    else:
        ids, w = sampler.induction_batch() if induction else sampler.weighted_batch()
        x, w = torch.from_numpy(ids), torch.from_numpy(w)  # [batch, context] each
        logits = model(input_ids=x).logits[:, :-1].float()  # [batch, context-1, vocab]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        loss = (nll * w[:, 1:]).sum() / w[:, 1:].sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
    opt.step()
    return loss.item(), gnorm


def _periodic_scores(model, tokenizer, cfg: TinyConfig, periodic: list) -> dict:
    """The held-out perplexity at L and the passkey rate just inside it, for a log record."""
    scores = {}
    if periodic:
        scores[f"heldout_ppl_{cfg.context}"] = heldout_ppl(model, periodic, cfg.context, tokenizer.bos_token_id)
    if cfg.eval_passkey_trials:
        rate = passkey_rate(model, tokenizer, cfg.context - PASSKEY_MARGIN, cfg.eval_passkey_trials, seed=cfg.seed + 1)
        if rate is not None:
            scores[f"passkey_{cfg.context}"] = rate
    return scores


def export(model, tokenizer, out_dir: Path, *, dtype: str = "float16") -> Path:
    """Save a normal HF folder (config.json, model.safetensors, tokenizer files) in ``dtype``."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    half = model.to(getattr(torch, dtype))
    half.save_pretrained(out_dir)
    model.to(torch.float32)
    tokenizer.save_pretrained(out_dir)
    return out_dir
