"""Cross-validation over many purged out-of-sample periods: walk-forward, CPCV, purged k-fold (docs/validation.md)."""

from mlfactory.validation.splits import ROLES, CVError, CVPlan, CVSplit, cpcv, purged_kfold, walk_forward

__all__ = ["ROLES", "CVError", "CVPlan", "CVSplit", "cpcv", "purged_kfold", "walk_forward"]
