"""The recipe machinery every benchmark shares: runs, the training loop, locks, provenance, weight averaging,
worker processes, evaluation modes, evidence and tables. A benchmark registers itself with
:func:`~advbn_aug.recipe.core.benchmark.register_benchmark`; nothing here imports a benchmark."""
