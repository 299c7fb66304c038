"""The file formats longrope reads and writes for factor sets, each read in one place.

- :mod:`longrope.formats.hf_config`: the RoPE part of a Hugging Face ``config.json`` (a dict or a
  transformers config object): rope parameters, head and rotary dims, L, and the longrope factors it
  carries. :mod:`longrope.models.families` reads a model's RoPE facts through it.
- :mod:`longrope.formats.factors`: ``factors.json``, the reference code's CSV, and which of the three
  a file is (:meth:`longrope.rope.FactorSet.load`).

The value they produce is :class:`longrope.rope.FactorSet` (pure math, no file format); its
``load``/``save``/``from_dict``/``to_dict``/``from_hf_config``/``from_csv`` methods are the entry points
and call these modules.
"""
