"""Benchmarks of nowcast_pl: run each from the repository root as ``python -m benchmarks.<name>`` (see README.md).

Each script prints JSON and, with ``--output``, writes it (committed results are in ``benchmarks/results/``).
Shared plumbing (machine description, JSON writing, timing, config reading, importing an official checkout)
is in :mod:`benchmarks.harness`; what a model pair needs (build ours and the official model, one training step,
one forecast) is in :mod:`benchmarks.pairs`.
"""
