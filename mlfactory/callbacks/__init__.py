"""Callbacks that write each run's record."""

from mlfactory.callbacks.run_record import RunRecord

__all__ = ["RunRecord"]
