"""Errors raised by mlfactory.

Every error says what was wrong, where, and what to do about it. The command line prints the message
on one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class MLFactoryError(Exception):
    """Base class of every error mlfactory raises on purpose."""


class DataError(MLFactoryError):
    """A split directory, file or column does not meet the data contract (docs/data.md)."""


class RegistryError(MLFactoryError):
    """A model name is unknown or registered twice."""


class ModelError(MLFactoryError):
    """A model was configured or used in a way it cannot support."""


class ConfigError(MLFactoryError):
    """A command line or recipe cannot be turned into a run."""


class RunError(MLFactoryError):
    """A run directory or checkpoint is missing, incomplete or unreadable."""


class EnsembleCompatibilityError(ModelError):
    """Ensemble members that cannot be combined: unknown, misconfigured, or trained for other labels."""


class BundleError(RunError):
    """An inference bundle that is missing, damaged, changed after it was written, or too new to read."""
