"""longrope: extend the context window of pre-trained RoPE language models (LongRoPE).

The top-level package imports nothing heavy, so ``longrope --help`` stays instant. Use the
subpackages directly:

- ``longrope.rope``      pure RoPE math: inverse frequencies, factor sets, baselines.
- ``longrope.models``    the only code that touches transformers: load, install factors, export.
- ``longrope.data``      corpora to token shards; seeded document sampling.
- ``longrope.evaluate``  perplexity, passkey, needle grids, plots.
- ``longrope.search``    the evolution search over rescale factors.
- ``longrope.embedded``  the small model, tokenizer and corpus shipped with the package.
- ``longrope.runs``      the commands that do work, each a config dataclass and ``run(config)``;
  ``longrope.tools`` the configs of the small tools (inspect, baseline, export, tokenize, generate).
- ``longrope.settings`` / ``longrope.groups``  the settings several commands share (window sample, passkey
  protocol, device and dtype, budgets): one default and one check each.
"""

__version__ = "0.1.0"
