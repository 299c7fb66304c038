"""Train the embedded tiny Llama from scratch: BPE tokenizer, model, loop, evaluation, export.

Pure functions plus one config dataclass; :mod:`longrope.cli.train_tiny` wires them together.
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

from longrope.embedded.passkey import NEEDLE, PasskeyPieces, answer_ids, build_prompt, first_integer
from longrope.errors import UserError
from longrope.io import atomic_write, write_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


@dataclass
class TinyConfig:
    """Everything that determines the trained model (recorded verbatim in ``training.json``)."""

    seed: int = 0
    """Seeds the weight init (torch) and the batch sampler (numpy)."""
    vocab_size: int = 4096
    """BPE vocabulary including the 3 special tokens."""
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    """head_dim = hidden_size / num_heads; 64 gives 32 RoPE frequency pairs."""
    intermediate_size: int = 768
    context: int = 256
    """Training length L (the model's original_max_position_embeddings)."""
    rope_theta: float = 10000.0
    batch_size: int = 16
    max_steps: int = 3000
    """Length of the cosine schedule and the default stopping point."""
    time_budget_s: float | None = None
    """Stop early (checkpointed, recorded) after this many seconds of training; None = no limit.
    Where it stops depends on the machine's speed; ``stop_at_step`` replays such a run exactly."""
    stop_at_step: int | None = None
    """Stop after this step without changing the schedule (which still spans ``max_steps``)."""
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    passkey_fraction: float = 0.1
    """Share of training sequences that are passkey prompts with their answer."""
    passkey_answer_weight: float = 1.0
    """Loss weight of the answer's key digits in passkey rows (1 = the plain LM loss). The answer
    is 5 tokens of ~250; weighting it speeds up learning to retrieve without more passkey rows."""
    copy_fraction: float = 0.0
    """Share of training sequences that are synthetic copy rows: a random string (digits or any
    tokens) after BOS, a stretch of book text, then the same string again. Only the second copy is
    a target (weighted like a passkey answer); the first copy is not (random tokens would teach the
    model nothing but noise). Such rows make induction (copy) heads form quickly, the ability a
    passkey answer needs and plain text plus passkey rows did not give this model."""
    copy_max_length: int = 32
    """Longest random string of a copy row (5..this many tokens; capped by half the context)."""
    induction_steps: int = 0
    """The first this many steps train on induction rows only: BOS, then a random string of 4..40
    tokens repeated to fill the row, the loss on every repeat after the first. A language model
    this small does not learn to copy from text, passkey rows or gapped copy rows in a few thousand
    steps; on induction rows it grows induction (copy) heads in a few hundred (their loss drops
    sharply), and the mixed rows that follow turn that into passkey retrieval."""
    induction_segments: int = 1
    """Induction batches hold ``batch_size * this`` rows of ``context / this`` tokens (same tokens
    per step, more distinct strings)."""
    eval_passkey_trials: int = 0
    """Passkey prompts at ``context`` scored at each periodic evaluation (0 = none; logging only)."""
    tokenizer: str | None = None
    """Reuse this tokenizer (a folder with ``tokenizer.json``, or the file) instead of training one;
    needed with ``init_from`` whenever the training text differs from the first stage's."""
    init_from: str | None = None
    """A train-tiny checkpoint whose weights start this run; its optimizer and schedule do not
    carry over (this run's warmup and cosine start afresh). Recorded with its hash in training.json."""
    eval_every: int = 250
    eval_windows: int = 24
    """Held-out 256-token windows scored at each periodic evaluation (logging only)."""
    checkpoint_every_s: float = 120.0
    threads: int = 1
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        positive = ["vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                    "context", "batch_size", "max_steps", "eval_every", "eval_windows", "threads"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise UserError(f"--hidden-size {self.hidden_size} must split into --num-heads "
                            f"{self.num_heads} heads of even size")
        if self.vocab_size < 300:
            raise UserError(f"--vocab-size {self.vocab_size} is below the 256 bytes + specials a "
                            "byte-level BPE needs; use >= 300")
        if self.context < 64:
            raise UserError(f"--context {self.context} is too short for a passkey prompt; use >= 64")
        if not 0.0 <= self.passkey_fraction < 1.0:
            raise UserError(f"--passkey-fraction must be in [0, 1), got {self.passkey_fraction}")
        if not 0.0 <= self.copy_fraction < 1.0 or self.passkey_fraction + self.copy_fraction >= 1.0:
            raise UserError(f"--copy-fraction must be in [0, 1) with --passkey-fraction + --copy-fraction "
                            f"< 1, got {self.copy_fraction} and {self.passkey_fraction}")
        if self.copy_max_length < 5:
            raise UserError(f"--copy-max-length must be >= 5, got {self.copy_max_length}")
        if not 0 <= self.induction_steps <= self.max_steps:
            raise UserError(f"--induction-steps must be in [0, --max-steps], got {self.induction_steps}")
        if not 1 <= self.induction_segments <= self.context // 16:
            raise UserError(f"--induction-segments must be in [1, context / 16], got {self.induction_segments}")
        if self.eval_passkey_trials < 0:
            raise UserError(f"--eval-passkey-trials must be >= 0, got {self.eval_passkey_trials}")
        if self.passkey_answer_weight <= 0:
            raise UserError(f"--passkey-answer-weight must be > 0, got {self.passkey_answer_weight}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise UserError("--lr must be > 0 and --min-lr-ratio in [0, 1]")
        if self.warmup_steps < 0:
            raise UserError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.stop_at_step is not None and not 1 <= self.stop_at_step <= self.max_steps:
            raise UserError(f"--stop-at-step must be in [1, --max-steps], got {self.stop_at_step}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UserError(f"--time-budget must be > 0 seconds, got {self.time_budget_s}")

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
        raise UserError(f"--tokenizer {path}: no tokenizer.json there; give a tiny model folder or its tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(file), bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                  model_max_length=1 << 30, clean_up_tokenization_spaces=False)
    if len(tok) != vocab_size:
        raise UserError(f"--tokenizer {path} has {len(tok)} tokens but --vocab-size is {vocab_size}; make them agree")
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
        self.min_passkey = 1 + len(self.pieces.intro) + len(self.encode(" The pass key is 12345. Remember it. "
                                                                        "12345 is the pass key.")) \
            + len(self.pieces.question) + 8
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
# Evaluation (self-contained: PI/NTK by editing inv_freq, so it needs no other package module)


def eval_windows(docs: list[np.ndarray], length: int, per_doc: int) -> list[tuple[int, int]]:
    """(doc index, offset) of ``per_doc`` evenly spaced spans of ``length - 1`` tokens per doc."""
    spans = []
    for i, d in enumerate(docs):
        room = len(d) - (length - 1)
        if room < 0:
            continue
        for k in range(per_doc):
            spans.append((i, int(room * k / max(1, per_doc - 1)) if per_doc > 1 else 0))
    return spans


def perplexity(model, docs: list[np.ndarray], spans: list[tuple[int, int]], length: int,
               bos_id: int, window: int | None = None) -> float:
    """Token-weighted PPL of BOS + next ``length - 1`` tokens at each span.

    With ``window`` < ``length`` each span is cut into consecutive windows of ``window - 1`` tokens,
    each scored with its own BOS, so PPL at the trained length covers the same text as at 8x.
    """
    import torch

    window = window or length
    nll, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for i, off in spans:
            text = docs[i][off : off + length - 1]
            for s in range(0, len(text), window - 1):
                piece = text[s : s + window - 1]
                if len(piece) < 2:
                    continue
                ids = torch.tensor(np.concatenate([[bos_id], piece]), dtype=torch.long)[None]
                logits = model(input_ids=ids).logits[0, :-1].float()  # [T-1, vocab]
                loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
                nll += float(loss)
                count += ids.shape[1] - 1
    return math.exp(nll / count)


def scale_inv_freq(model, factors: np.ndarray | None, attention_scaling: float = 1.0) -> None:
    """Divide the model's RoPE ``inv_freq`` by ``factors`` and set the cos/sin multiplier.

    ``None`` restores the original RoPE. Works because Llama's rotary module recomputes cos/sin
    from its ``inv_freq`` buffer and ``attention_scaling`` on every forward (default rope type).
    """
    import torch

    rot = model.model.rotary_emb
    if not hasattr(rot, "_longrope_orig_inv_freq"):
        rot._longrope_orig_inv_freq = rot.inv_freq.detach().clone()
        rot._longrope_orig_scaling = float(getattr(rot, "attention_scaling", 1.0))
    orig = rot._longrope_orig_inv_freq
    if factors is None:
        rot.inv_freq = orig.clone()
        rot.attention_scaling = rot._longrope_orig_scaling
    else:
        rot.inv_freq = (orig.double() / torch.as_tensor(factors, dtype=torch.float64)).to(orig.dtype)
        rot.attention_scaling = float(attention_scaling)


def baseline_factors(method: str, *, rotary_dim: int, rope_theta: float, scale: float,
                     original_length: int = 256) -> tuple[np.ndarray, float]:
    """(λ per frequency pair, cos/sin multiplier) of a closed-form baseline.

    PI: λ = s. NTK-aware: b' = b·s^(d/(d−2)), λ_i = (b'/b)^(2i/d). YaRN (β_fast 32, β_slow 1):
    ramp between the dims whose wavelength fits 32 and 1 times in L, λ_i = 1/((1−mask)/s + mask),
    m = 0.1 ln s + 1. Kept local so this package's report needs no other module.
    """
    d = rotary_dim
    i = np.arange(d // 2, dtype=np.float64)
    if method == "pi":
        return np.full(d // 2, float(scale)), 1.0
    if method == "ntk":
        return (scale ** (d / (d - 2))) ** (2 * i / d), 1.0
    if method == "yarn":
        def dim(r: float) -> float:
            return d * math.log(original_length / (2 * math.pi * r)) / (2 * math.log(rope_theta))

        low = max(math.floor(dim(32.0)), 0)
        high = min(math.ceil(dim(1.0)), d - 1)
        ramp = np.clip((i - low) / max(high - low, 1e-3), 0.0, 1.0)
        mask = 1.0 - ramp  # 1 = keep the original frequency (extrapolate), 0 = interpolate
        return 1.0 / ((1.0 - mask) / scale + mask), 0.1 * math.log(scale) + 1.0
    raise ValueError(f"unknown baseline {method!r}")


def passkey_min_length(tokenizer) -> int:
    """Tokens of the shortest passkey prompt (no filler) plus its 6-token answer."""
    encode = encoder(tokenizer)
    pieces = PasskeyPieces.from_tokenizer(encode)
    return 1 + len(pieces.intro) + len(encode(NEEDLE.format(key=12345))) + len(pieces.question) + 6


def passkey_accuracy(model, tokenizer, length: int, trials: int, seed: int) -> float:
    """Share of ``trials`` passkey prompts answered right (greedy, KV cache).

    The prompt has ``length - 8`` tokens so that prompt and the 7 generated tokens fit in
    ``length`` positions: "passkey at 256" stays inside the trained window.
    """
    import torch

    encode = encoder(tokenizer)
    pieces = PasskeyPieces.from_tokenizer(encode)
    rng = np.random.default_rng(seed)
    right = 0
    model.eval()
    with torch.inference_mode():
        for t in range(trials):
            key = int(rng.integers(10000, 100000))
            depth = t / max(1, trials - 1)
            ids = build_prompt(pieces, encode, length=length - 8, key=key, depth=depth,
                               bos_id=tokenizer.bos_token_id)
            x = torch.tensor([ids])
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=7,
                                 do_sample=False, pad_token_id=tokenizer.eos_token_id)
            right += first_integer(tokenizer.decode(out[0, len(ids):])) == key
    return right / trials


def forward_seconds(model, length: int, vocab: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of one forward pass over ``length`` tokens."""
    import torch

    x = torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(0))
    best = float("inf")
    with torch.inference_mode():
        model(input_ids=x[:, :16])
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(input_ids=x)
            best = min(best, time.perf_counter() - t0)
    return best


def report(model, tokenizer, heldout: list[np.ndarray], cfg: TinyConfig, *, per_doc: int = 4,
           target: int | None = None, passkey_trials: int = 20) -> dict:
    """Held-out PPL at L (same text as the 8x spans), at 8x unscaled / PI / NTK, passkey, speed."""
    target = target or 8 * cfg.context
    rotary_dim = cfg.hidden_size // cfg.num_heads
    bos = tokenizer.bos_token_id
    spans = eval_windows(heldout, target, per_doc)
    out: dict = {"target_length": target, "heldout_spans": len(spans),
                 "protocol": f"BOS + {target - 1} tokens at {per_doc} evenly spaced offsets per held-out "
                             f"doc; at {cfg.context} the same text in BOS-first windows of {cfg.context}; "
                             "token-weighted NLL"}
    if not spans:
        out["note"] = f"no held-out document has {target} tokens"
        return out
    scale_inv_freq(model, None)
    if passkey_trials and passkey_min_length(tokenizer) > cfg.context:
        passkey_trials = 0  # context too short for the standard prompt (microscopic test configs)
    out[f"ppl_{cfg.context}"] = perplexity(model, heldout, spans, target, bos, window=cfg.context)
    out[f"ppl_{target}_unscaled"] = perplexity(model, heldout, spans, target, bos)
    s = target / cfg.context
    for method in ("pi", "ntk", "yarn"):
        factors, mscale = baseline_factors(method, rotary_dim=rotary_dim, rope_theta=cfg.rope_theta,
                                           scale=s, original_length=cfg.context)
        scale_inv_freq(model, factors, mscale)
        out[f"ppl_{target}_{method}"] = perplexity(model, heldout, spans, target, bos)
        if passkey_trials:
            out[f"passkey_{target}_{method}"] = passkey_accuracy(model, tokenizer, target, passkey_trials,
                                                                 seed=cfg.seed + 1)
    scale_inv_freq(model, None)
    if passkey_trials:
        out[f"passkey_{cfg.context}"] = passkey_accuracy(model, tokenizer, cfg.context, passkey_trials,
                                                         seed=cfg.seed + 1)
        out[f"passkey_{target}_unscaled"] = passkey_accuracy(model, tokenizer, target, passkey_trials,
                                                             seed=cfg.seed + 1)
    out[f"forward_seconds_{target}"] = forward_seconds(model, target, len(tokenizer))
    return out


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
    init_info = None
    if cfg.init_from is not None:
        init_path = Path(cfg.init_from)
        if not init_path.is_file():
            raise UserError(f"--init-from {init_path} is not a file; give a train-tiny checkpoint (.pt)")
        init = torch.load(init_path, weights_only=False)
        model.load_state_dict(init["model"])
        init_info = {"path": str(init_path), "sha256": hashlib.sha256(init_path.read_bytes()).hexdigest(),
                     "fingerprint": init["fingerprint"], "config": init.get("config"), "step": init["step"],
                     "log": init["log"]}
        del init
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    rng = np.random.default_rng(cfg.seed)
    step, log, elapsed_before = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["fingerprint"] != cfg.fingerprint():
            raise UserError(f"checkpoint {checkpoint} is from a different config; delete it or pass "
                            "--no-resume")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        step, log, elapsed_before = state["step"], state["log"], state["elapsed_s"]
    sampler = BatchSampler(train_docs, tokenizer, cfg, rng)
    eval_spans = eval_windows(eval_docs, cfg.context, max(1, cfg.eval_windows // max(1, len(eval_docs))))

    def save_checkpoint() -> None:
        if checkpoint is None:
            return
        state = {"fingerprint": cfg.fingerprint(), "config": dataclasses.asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "rng": rng.bit_generator.state, "step": step, "log": log,
                 "elapsed_s": elapsed_before + time.perf_counter() - t_start}
        atomic_write(checkpoint, lambda f: torch.save(state, f), mode="wb")

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
        if cfg.time_budget_s is not None and time.perf_counter() - t_start >= cfg.time_budget_s:
            stopped_early = True
            break
        if cfg.stop_at_step is not None and step >= cfg.stop_at_step:
            stopped_early = True
            break
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        induction = step < cfg.induction_steps
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
        step += 1
        running += loss.item()
        n_running += 1
        if step % cfg.eval_every == 0 or step in (cfg.max_steps, cfg.stop_at_step, cfg.induction_steps):
            entry = {"step": step, "phase": "induction" if induction else "mixed", "lr": lr,
                     "train_loss": running / n_running, "grad_norm": gnorm,
                     "tokens": step * tokens_per_step, "elapsed_s": round(elapsed, 1)}
            if eval_spans:
                entry[f"heldout_ppl_{cfg.context}"] = perplexity(model, eval_docs, eval_spans, cfg.context,
                                                                 tokenizer.bos_token_id)
            if cfg.eval_passkey_trials and passkey_min_length(tokenizer) <= cfg.context:
                entry[f"passkey_{cfg.context}"] = passkey_accuracy(model, tokenizer, cfg.context,
                                                                   cfg.eval_passkey_trials, seed=cfg.seed + 1)
            model.train()
            running, n_running = 0.0, 0
            record(entry)
        if time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s:
            save_checkpoint()
            last_ckpt = time.perf_counter()
    save_checkpoint()
    summary = {"steps": step, "tokens_seen": step * tokens_per_step, "stopped_early": stopped_early,
               "train_seconds": round(elapsed_before + time.perf_counter() - t_start, 1)}
    if init_info is not None:
        summary["init_from"] = init_info
    model.eval()
    return model, log, summary


def export(model, tokenizer, out_dir: Path, *, dtype: str = "float16") -> Path:
    """Save a normal HF folder (config.json, model.safetensors, tokenizer files) in ``dtype``."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    half = model.to(getattr(torch, dtype))
    half.save_pretrained(out_dir)
    model.to(torch.float32)
    tokenizer.save_pretrained(out_dir)
    return out_dir
