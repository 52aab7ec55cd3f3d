"""Registered models, one file each, grouped by family; bases in base.py, estimator.py and neural/base.py."""
