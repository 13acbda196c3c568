"""Sparsity algorithms: ``at_init`` (SNIP, GraSP, SynFlow, random pruning) and ``during``
(GMP, SET, RigL). Each is a small composition of the four axes plus its own step logic, with one
config dataclass (``algorithms.config``) for its settings. The lottery-ticket procedure (IMP)
runs whole trainings and lives above the runner, in ``sparsetorch.lottery``; the runner's
adapters are in ``sparsetorch.experiments.methods``.
"""
