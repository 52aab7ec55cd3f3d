"""Hyper-parameter search for ``mlfactory tune`` (docs/tuning.md).

- :mod:`~mlfactory.tuning.space`: search spaces (one default per registered model in
  ``mlfactory/recipes/search/<model>.yaml``), checked against the model's own constraints;
- :mod:`~mlfactory.tuning.storage`: the study's storage (a SQLite file in the study directory, or a shared
  database such as PostgreSQL), the trial slots shared by many workers, and the heartbeat;
- :mod:`~mlfactory.tuning.pruning`: per-round (boosting), per-epoch (neural) and per-split (cv) pruning;
- :mod:`~mlfactory.tuning.overfitting`: the deflated Sharpe ratio and the probability of backtest
  overfitting (CSCV);
- :mod:`~mlfactory.tuning.study`: the worker loop, the trials' run records, ``best.yaml`` and the summary.

Importing this package imports neither optuna nor torch.
"""

from mlfactory.errors import ConfigError


class TuneError(ConfigError):
    """A search space, a storage or a ``--tune.*`` setting that cannot become a study."""


__all__ = ["TuneError"]
