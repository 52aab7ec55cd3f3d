"""Read runs back in a notebook: :func:`load_run` for one run, :func:`list_runs` for the leaderboard.

>>> run = load_run("lightning_logs/lstm/20261202-131937-09a9ba")  # doctest: +SKIP
>>> run.kind, run.state, run.metrics["test"]["balanced_accuracy"]  # doctest: +SKIP
('fit', 'complete', 0.4081)
>>> run.predictions("test").head()  # datetime, symbol, label, p_down, p_neutral, p_up, ...  # doctest: +SKIP

Everything is read from the run's record (docs/architecture.md, docs/validation.md); nothing trains
and torch is imported only by :attr:`Run.bundle`. :func:`list_runs` is the very table
``mlfactory compare`` prints (:func:`mlfactory.evaluation.compare.compare_runs`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlfactory.errors import RunError
from mlfactory.evaluation import compare

if TYPE_CHECKING:
    import pandas as pd

    from mlfactory.inference.bundle import ModelBundle

EVALUATIONS_DIR = "evaluations"


class Run:
    """One run directory: a fit, a cross-validation, or a test/validate/predict of a checkpoint.

    Use :func:`load_run` to get one; it checks the record first. Every attribute reads its file when
    first asked for and keeps it.

    Attributes:
        path: the run directory.
        kind: ``fit``, ``cv``, ``test``, ``validate`` or ``predict`` (the stage in ``status.json``).
        state: ``complete``, ``failed``, ``running`` or ``dead`` (a running run whose process is gone).
        status: ``status.json`` as a dict.
    """

    def __init__(self, path: Path, status: dict[str, Any], state: str) -> None:
        self.path = path
        self.status = status
        self.state = state
        self.kind = str(status.get("stage") or "fit")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, kind={self.kind!r}, state={self.state!r})"

    # --- the record ----------------------------------------------------------------------------
    @cached_property
    def metrics(self) -> dict[str, Any]:
        """A fit's (or test/validate's) ``metrics/evaluation_metrics.json``: ``{"val": {...}, "test": {...}}``;
        a cross-validation's ``summary.json`` (per split, per path, ``across_splits``)."""
        return self._json(compare.CV_SUMMARY if self.kind == "cv" else compare.EVALUATION)

    @cached_property
    def training(self) -> dict[str, Any]:
        """``metrics/training_metrics.json`` of a fit: epochs, time, best score, early stopping, history."""
        self._not_cv("training", "each split's: run.splits[k].training")
        return self._json(compare.TRAINING_METRICS)

    @cached_property
    def config(self) -> dict[str, Any]:
        """``{"model": model_config.json, "training": training_config.json}``; a cross-validation adds
        ``"cv"`` (its scheme and settings) and takes the model and data settings of its first split."""
        base = compare.CV_FIRST_SPLIT if self.kind == "cv" else ""
        config = {"model": self._json(base + compare.MODEL_CONFIG), "training": self._json(base + compare.TRAINING_CONFIG)}
        if self.kind == "cv":
            summary = self.metrics
            config["cv"] = {"scheme": summary.get("scheme"), **(summary.get("settings") or {})}
        return config

    @property
    def model(self) -> str:
        """The registry name of the model."""
        return str(self.config["model"].get("name") or self.path.parent.name)

    @property
    def horizon(self) -> int | None:
        """The label horizon in bars."""
        return (self.config["training"].get("data") or {}).get("horizon")

    def predictions(self, split: str | int = "test") -> "pd.DataFrame":
        """Predictions as a table: ``datetime``, ``symbol``, ``label`` (class 0/1/2), ``p_down``,
        ``p_neutral``, ``p_up``, ``predicted_class``, ``confidence``, ``row``, and ``fwd_return`` when
        the run's split files are still on disk and hold it.

        ``split`` is ``val``, ``test`` or ``predict_<split>`` for a fit. For a cross-validation,
        ``"test"`` is ``predictions.parquet`` (every path's stitched out-of-sample predictions, with
        ``path`` and ``split``; ``fwd_return`` when the data had it) and an integer ``k`` is split
        ``k``'s own test predictions.
        """
        if self.kind == "cv":
            if isinstance(split, int):
                own = self.splits[split].predictions("test").drop(columns="fwd_return", errors="ignore")
                stitched = self._parquet("predictions.parquet")
                if "fwd_return" not in stitched:
                    return own
                returns = stitched.loc[stitched["split"] == split, ["datetime", "symbol", "fwd_return"]]
                return own.merge(returns.drop_duplicates(["datetime", "symbol"]), on=["datetime", "symbol"], how="left")
            if split != "test":
                raise RunError(f"{self.path} is a cross-validation: its predictions are 'test' (every path) "
                               f"or a split number k (that split's test rows), not {split!r}")
            return self._parquet("predictions.parquet")
        return _prediction_table(self, str(split))

    @cached_property
    def history(self) -> "pd.DataFrame":
        """The learning curve: one row per boosting round (``round``, ``train_<metric>``,
        ``val_<metric>``) for a model that records rounds, else one row per epoch (``epoch``, ``step``
        and every logged scalar)."""
        import pandas as pd

        rounds = self.rounds
        if not rounds.empty:
            return rounds
        return pd.DataFrame(self.training.get("history") or [])

    @cached_property
    def rounds(self) -> "pd.DataFrame":
        """Per boosting round: ``round`` and ``<split>_<metric>`` columns; empty for other models."""
        import pandas as pd

        recorded = self.training.get("rounds") or {}
        columns: dict[str, list[float]] = {}
        if isinstance(recorded, dict):
            for split, curves in recorded.items():
                if isinstance(curves, dict):
                    columns.update({f"{split}_{name}": list(values) for name, values in curves.items()
                                    if isinstance(values, list)})
        if not columns:
            return pd.DataFrame()
        length = max(len(v) for v in columns.values())
        table = pd.DataFrame({k: v + [float("nan")] * (length - len(v)) for k, v in columns.items()})
        table.insert(0, "round", range(len(table)))
        return table

    @cached_property
    def bundle(self) -> "ModelBundle":
        """The run's inference bundle (``bundle/``), verified and loaded on first use."""
        self._not_cv("bundle", "one per split: run.splits[k].bundle")
        if not (self.path / "bundle").is_dir():
            raise RunError(f"{self.path} has no bundle/ ({self.kind} runs write none); load the bundle of the fit")
        from mlfactory.inference.bundle import ModelBundle

        return ModelBundle.load(self.path / "bundle")

    # --- what belongs to it --------------------------------------------------------------------
    @cached_property
    def splits(self) -> list["Run"]:
        """A cross-validation's per-split runs (``splits/<k>/``), in split order."""
        if self.kind != "cv":
            raise RunError(f"{self.path} is a {self.kind} run; only a cross-validation has splits")
        folders = [p for p in (self.path / "splits").iterdir() if p.name.isdigit()] if (self.path / "splits").is_dir() else []
        return [load_run(p) for p in sorted(folders, key=lambda p: int(p.name))]

    @cached_property
    def folds(self) -> "pd.DataFrame":
        """A cross-validation's ``folds.parquet``: split, datetime, symbol, group, role per development row."""
        if self.kind != "cv":
            raise RunError(f"{self.path} is a {self.kind} run; only a cross-validation has folds")
        return self._parquet("folds.parquet")

    @cached_property
    def evaluations(self) -> list["Run"]:
        """The test/validate/predict runs made from this fit's checkpoints (``evaluations/*/``)."""
        folder = self.path / EVALUATIONS_DIR
        if not folder.is_dir():
            return []
        return [load_run(p) for p in sorted(folder.iterdir()) if (p / compare.STATUS).is_file()]

    # --- reading -------------------------------------------------------------------------------
    def _json(self, relative: str) -> dict[str, Any]:
        value, problem = compare._read_record(self.path, relative)
        if problem:
            raise RunError(f"{self.path}: {problem}; the run record is damaged")
        if value is None:
            raise RunError(f"{self.path} has no {relative}{self._why_missing()}")
        return value

    def _parquet(self, relative: str) -> "pd.DataFrame":
        import pandas as pd

        path = self.path / relative
        if not path.is_file():
            raise RunError(f"{self.path} has no {relative}{self._why_missing()}")
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise RunError(f"{path} is unreadable ({type(err).__name__}); the run record is damaged") from None

    def _why_missing(self) -> str:
        if self.state == "failed":
            return f": the run failed ({self.status.get('error', 'no error recorded')})"
        if self.state in ("running", "dead"):
            return f": the run is {self.state}, not complete"
        return f" (a {self.kind} run does not write it)"

    def _not_cv(self, what: str, instead: str) -> None:
        if self.kind == "cv":
            raise RunError(f"{self.path} is a cross-validation: it has no single {what}; use {instead}")


def load_run(path: str | Path) -> Run:
    """The run at ``path`` (``lightning_logs/<model>/<run_id>``, ``lightning_logs/cv/<model>/<run_id>``,
    a cross-validation's ``splits/<k>`` or a fit's ``evaluations/<stage>-<id>``).

    Raises:
        RunError: ``path`` is not a run directory, or its record is damaged (an unreadable
            ``status.json``, or a complete run missing or unable to read a file its stage writes).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise RunError(f"{path} does not exist; pass a run directory such as lightning_logs/<model>/<run_id> "
                       "(mlfactory.list_runs() lists them)")
    if not (path / compare.STATUS).is_file():
        inside = next(path.rglob(compare.STATUS), None) if path.is_dir() else None
        hint = (f"it holds runs (e.g. {inside.parent}): mlfactory.list_runs({str(path)!r}) lists them"
                if inside else "a run directory holds status.json")
        raise RunError(f"{path} is not a run: it has no {compare.STATUS}; {hint}")
    row = compare.run_row(path)
    if row["status"] == "broken":
        raise RunError(f"{path}: the run record is damaged: {row['problem']}")
    status, _ = compare._read_record(path, compare.STATUS)
    return Run(path, status or {}, row["status"])


def list_runs(root: str | Path | list[str | Path] = "lightning_logs", sort: str = "test_balanced_accuracy",
              include_incomplete: bool = False, top: int | None = None) -> "pd.DataFrame":
    """The leaderboard of the runs under ``root`` (a folder, a run, or a list of them): exactly the table
    ``mlfactory compare`` prints for the same paths and options.

    One row per fit or cross-validation, best ``sort`` first: model, stage, horizon, data, the
    hyper-parameters that differ (``hp.*``), val and test scores with the 95 % block-bootstrap
    interval of ``sort`` and the ``noise`` mark (docs/metrics.md), a cross-validation's spread, train
    time, evaluations of the fit, and ``run_dir`` (give it to :func:`load_run`).
    ``include_incomplete`` adds failed, running, dead and broken runs; ``top`` keeps the best N.
    """
    roots = [Path(p).expanduser() for p in (root if isinstance(root, (list, tuple)) else [root])]
    return compare.compare_runs(roots, sort=sort, include_incomplete=include_incomplete, top=top)[1]


def _prediction_table(run: Run, split: str) -> "pd.DataFrame":
    """A fit's ``predictions/<split>_predictions.npz`` as a DataFrame, with ``fwd_return`` where it can be joined."""
    path = run.path / compare.PREDICTIONS.format(split=split)
    if not path.is_file():
        saved = sorted(p.name.removesuffix("_predictions.npz") for p in (run.path / "predictions").glob("*_predictions.npz"))
        choices = f"it has {', '.join(saved)}" if saved else "it saved no predictions"
        raise RunError(f"{run.path} has no {split} predictions ({path.name}); {choices}{run._why_missing() if not saved else ''}")
    table = compare.prediction_table(path)
    if table is None:
        raise RunError(f"{path} is unreadable; the run record is damaged")
    if compare._inside_cv_run(run.path):  # a split of a cross-validation predicts development rows, not `test`
        return table
    data = run.config["training"].get("data") or {}
    return compare.with_forward_returns(table, data, split.removeprefix("predict_"), build_sample=True)
