"""The tiny model's trainer: rebuilds the embedded corpus, tokenizer and tiny Llama that ship in
``src/longrope/embedded/assets`` (a maintainer tool: users never need to rebuild them, so it is not part
of the installed package). Run it from the repository root::

    python -m tools.train_tiny -o OUT [flags]               # --help lists them
    python -m tools.train_tiny --config RUN_DIR -o NEW_DIR --no-resume   # repeat a recorded run

It was ``longrope train-tiny``; the flags, the run folders (which still record the command
``train-tiny``) and the checkpoints are the same.

- :mod:`.run` — the run: corpus, tokenizer, training, export, ``training.json``, the report;
- :mod:`.config` — :class:`~.config.TinyConfig`, what determines the trained model;
- :mod:`.tokenizer`, :mod:`.model`, :mod:`.passkey`, :mod:`.batches` — its pieces;
- :mod:`.loop` — the training loop; :mod:`.checkpoint` — its ``.safetensors`` checkpoints;
- :mod:`.report` — the held-out report through ``longrope.evaluate``;
- :mod:`.__main__` — the command line (``longrope``'s, with this one run).
"""
