"""Purged, embargoed cross-validation splits over the development rows (docs/validation.md).

Pure numpy over the development rows' timestamps and symbol codes, rows grouped by symbol and sorted
by time within a symbol (the container's row order). Time is cut into groups by unique timestamp, so
one group is one period for every symbol.

Purge: a training row whose label window (the next ``horizon`` rows of its symbol) reaches into a
test group is dropped. Embargo: the ``embargo`` rows of each symbol right after a test row are dropped
from training. Every split also gets a validation tail (the latest ``val_fraction`` of its training
period, for early stopping); the rest of the training rows are purged against it in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from math import comb

import numpy as np

from mlfactory.errors import ConfigError

ROLES = ("train", "val", "test", "purged", "embargoed", "unused")
"""Role of a development row in one split; ``unused`` rows are outside a walk-forward training period."""


class CVError(ConfigError):
    """Cross-validation settings that cannot split the development rows."""


@dataclass(frozen=True)
class CVSplit:
    """One split: development row indices by role (each sorted) and the groups it tests."""

    index: int
    test_groups: tuple[int, ...]
    roles: np.ndarray  # (n_rows,) int8 index into ROLES

    def rows(self, role: str) -> np.ndarray:
        """The development rows that have ``role`` in this split."""
        return np.flatnonzero(self.roles == ROLES.index(role))

    @property
    def train(self) -> np.ndarray:
        return self.rows("train")

    @property
    def val(self) -> np.ndarray:
        return self.rows("val")

    @property
    def test(self) -> np.ndarray:
        return self.rows("test")


@dataclass(frozen=True)
class CVPlan:
    """All splits of one scheme, the time group of every row, and the backtest paths.

    ``paths[p, g]`` is the split whose prediction path ``p`` uses for the rows of group ``g``
    (-1: the path has no prediction there, e.g. walk-forward's first, training-only group).
    """

    scheme: str
    groups: np.ndarray  # (n_rows,) group of each development row
    splits: list[CVSplit]
    paths: np.ndarray  # (n_paths, n_groups) split index or -1
    settings: dict = field(default_factory=dict)

    @property
    def n_paths(self) -> int:
        return len(self.paths)

    def path_rows(self, path: int) -> dict[int, np.ndarray]:
        """Split index -> the test rows that path ``path`` takes from it."""
        taken: dict[int, list[np.ndarray]] = {}
        for group, split in enumerate(self.paths[path]):
            if split >= 0:
                taken.setdefault(int(split), []).append(np.flatnonzero(self.groups == group))
        return {split: np.sort(np.concatenate(parts)) for split, parts in taken.items()}


def time_groups(timestamps: np.ndarray, n_groups: int, horizon: int) -> np.ndarray:
    """The group (0 .. n_groups-1) of every row: contiguous periods of equally many unique timestamps."""
    if n_groups < 2:
        raise CVError(f"--cv.n_groups {n_groups}: cross-validation needs at least 2 groups")
    times, inverse = np.unique(timestamps, return_inverse=True)
    if n_groups > len(times):
        raise CVError(
            f"--cv.n_groups {n_groups} is more than the {len(times)} distinct timestamps of the development rows; "
            "choose fewer groups"
        )
    bounds = np.array([len(part) for part in np.array_split(np.arange(len(times)), n_groups)])
    if bounds.min() <= horizon:
        raise CVError(
            f"a group of {bounds.min()} timestamps is not longer than the label horizon {horizon}: every training row "
            f"next to a test group would be purged. Choose fewer than {n_groups} groups (or --cv.n_splits) or a "
            "shorter --data.horizon"
        )
    group_of_time = np.repeat(np.arange(n_groups), bounds)
    return group_of_time[inverse.ravel()]


def _segment_bounds(symbol_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row and one past the last row of each row's symbol block."""
    n = len(symbol_codes)
    boundary = np.ones(n, dtype=bool)
    boundary[1:] = symbol_codes[1:] != symbol_codes[:-1]
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], n)
    block = np.cumsum(boundary) - 1
    return starts[block], ends[block]


def _near(marked: np.ndarray, starts: np.ndarray, ends: np.ndarray, ahead: int, behind: int) -> np.ndarray:
    """Rows with a marked row of the same symbol within the next ``ahead`` or the previous ``behind`` rows."""
    rows = np.arange(len(marked))
    cum = np.concatenate([[0], np.cumsum(marked)])
    hit = np.zeros(len(marked), dtype=bool)
    if ahead > 0:
        upper = np.minimum(rows + ahead, ends - 1)
        hit |= cum[upper + 1] - cum[rows + 1] > 0
    if behind > 0:
        lower = np.maximum(rows - behind, starts)
        hit |= cum[rows] - cum[lower] > 0
    return hit


def assign_roles(
    test: np.ndarray,
    candidates: np.ndarray,
    timestamps: np.ndarray,
    symbol_codes: np.ndarray,
    horizon: int,
    embargo: int,
    val_fraction: float,
) -> np.ndarray:
    """Roles of every row given the test rows and the rows that may train (boolean masks).

    Training candidates are purged (label window reaches a test row) and embargoed (within ``embargo``
    rows after a test row); the latest ``val_fraction`` of the remaining training timestamps becomes
    the validation tail, and the training rows whose label window reaches into it are purged too.
    """
    starts, ends = _segment_bounds(symbol_codes)
    roles = np.full(len(test), ROLES.index("unused"), dtype=np.int8)
    purged = candidates & ~test & _near(test, starts, ends, horizon, 0)
    embargoed = candidates & ~test & ~purged & _near(test, starts, ends, 0, embargo)
    train = candidates & ~test & ~purged & ~embargoed
    val = np.zeros_like(train)
    if train.any():
        times = np.unique(timestamps[train])
        n_val = max(1, int(round(val_fraction * len(times))))
        if n_val >= len(times):
            raise CVError(f"--cv.val_fraction {val_fraction} leaves no training rows; choose a smaller fraction")
        val = train & (timestamps >= times[len(times) - n_val])
        purged_by_val = train & ~val & _near(val, starts, ends, horizon, 0)
        purged |= purged_by_val
        train &= ~val & ~purged_by_val
    roles[test] = ROLES.index("test")
    roles[purged] = ROLES.index("purged")
    roles[embargoed] = ROLES.index("embargoed")
    roles[val] = ROLES.index("val")
    roles[train] = ROLES.index("train")
    return roles


def _check_rows(timestamps: np.ndarray, symbol_codes: np.ndarray, horizon: int, embargo: int | None,
                val_fraction: float) -> int:
    if not 0 < val_fraction < 1:
        raise CVError(f"--cv.val_fraction {val_fraction}: the validation tail is a share of the training period, "
                      "between 0 and 1 (e.g. 0.1); every split needs one for early stopping")
    if len(timestamps) != len(symbol_codes):
        raise CVError(f"{len(timestamps)} timestamps but {len(symbol_codes)} symbol codes")
    if horizon < 1:
        raise CVError(f"label horizon {horizon}: it must be at least 1 bar")
    embargo = horizon if embargo is None else embargo
    if embargo < 0:
        raise CVError(f"--cv.embargo {embargo}: an embargo is a number of bars, 0 or more")
    return embargo


def _finish(scheme: str, groups: np.ndarray, splits: list[CVSplit], paths: np.ndarray, settings: dict) -> CVPlan:
    for split in splits:
        for role in ("train", "test"):
            if not (split.roles == ROLES.index(role)).any():
                raise CVError(
                    f"{scheme} split {split.index} (test groups {list(split.test_groups)}) has no {role} rows after "
                    "purge and embargo; choose fewer groups, a smaller --cv.embargo or a shorter horizon"
                )
    return CVPlan(scheme, groups, splits, paths, settings)


def cpcv(
    timestamps: np.ndarray,
    symbol_codes: np.ndarray,
    horizon: int,
    n_groups: int = 6,
    n_test_groups: int = 2,
    embargo: int | None = None,
    val_fraction: float = 0.1,
) -> CVPlan:
    """Combinatorial purged CV: every choice of ``n_test_groups`` of ``n_groups`` groups as test.

    C(N, k) splits and k·C(N, k)/N paths; each path takes every group's prediction from exactly one split.
    """
    embargo = _check_rows(timestamps, symbol_codes, horizon, embargo, val_fraction)
    if not 1 <= n_test_groups < n_groups:
        raise CVError(
            f"--cv.n_test_groups {n_test_groups} with --cv.n_groups {n_groups}: the test groups must be at least 1 "
            "and fewer than the groups, so that something is left to train on"
        )
    groups = time_groups(timestamps, n_groups, horizon)
    splits = []
    for index, chosen in enumerate(combinations(range(n_groups), n_test_groups)):
        test = np.isin(groups, chosen)
        roles = assign_roles(test, ~test, timestamps, symbol_codes, horizon, embargo, val_fraction)
        splits.append(CVSplit(index, tuple(chosen), roles))
    n_paths = comb(n_groups - 1, n_test_groups - 1)  # = k·C(N, k)/N
    paths = np.full((n_paths, n_groups), -1, dtype=np.int64)
    for group in range(n_groups):
        testing = [s.index for s in splits if group in s.test_groups]
        paths[:, group] = testing  # the p-th split that tests this group feeds path p
    settings = {"n_groups": n_groups, "n_test_groups": n_test_groups, "horizon": horizon, "embargo": embargo,
                "val_fraction": val_fraction}
    return _finish("cpcv", groups, splits, paths, settings)


def purged_kfold(
    timestamps: np.ndarray,
    symbol_codes: np.ndarray,
    horizon: int,
    n_splits: int = 5,
    embargo: int | None = None,
    val_fraction: float = 0.1,
) -> CVPlan:
    """Purged k-fold: each of ``n_splits`` contiguous groups is the test group once (CPCV with k = 1)."""
    plan = cpcv(timestamps, symbol_codes, horizon, n_splits, 1, embargo, val_fraction)
    return CVPlan("kfold", plan.groups, plan.splits, plan.paths, {**plan.settings, "n_splits": n_splits})


def walk_forward(
    timestamps: np.ndarray,
    symbol_codes: np.ndarray,
    horizon: int,
    n_splits: int = 5,
    train_window: int | None = None,
    embargo: int | None = None,
    val_fraction: float = 0.1,
) -> CVPlan:
    """Walk-forward: ``n_splits`` consecutive test windows, each trained only on what came before it.

    The development period is cut into ``n_splits + 1`` groups; group 0 only trains. Training is
    expanding (every earlier row) or rolling (the last ``train_window`` timestamps before the window).
    One path: the test windows in order.
    """
    embargo = _check_rows(timestamps, symbol_codes, horizon, embargo, val_fraction)
    if n_splits < 1:
        raise CVError(f"--cv.n_splits {n_splits}: walk-forward needs at least 1 test window")
    if train_window is not None and train_window <= horizon:
        raise CVError(f"--cv.train_window {train_window} must be longer than the label horizon {horizon}")
    groups = time_groups(timestamps, n_splits + 1, horizon)
    times = np.unique(timestamps)
    splits = []
    for index in range(n_splits):
        test = groups == index + 1
        start = timestamps[test].min()
        before = timestamps < start
        if train_window is not None:
            first = times[max(0, np.searchsorted(times, start) - train_window)]
            before &= timestamps >= first
        roles = assign_roles(test, before, timestamps, symbol_codes, horizon, embargo, val_fraction)
        splits.append(CVSplit(index, (index + 1,), roles))
    paths = np.array([[-1] + list(range(n_splits))], dtype=np.int64)
    settings = {"n_splits": n_splits, "train_window": train_window, "horizon": horizon, "embargo": embargo,
                "val_fraction": val_fraction}
    return _finish("walk_forward", groups, splits, paths, settings)
