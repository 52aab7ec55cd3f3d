"""Shared fixtures: small sample splits from the project's own generator, and an isolated cache."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlfactory.data.synthetic import make_sample_splits

os.environ.setdefault("PYTHONHASHSEED", "0")

TEST_PREPARE = {"timeframes": ("1min",)}
"""Test data is prepared on the base timeframe only: 30 features and a 100-bar warm-up keep the suite fast.
The embedded default uses all nine timeframes (190 features); prepare's own tests cover the others."""


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample data goes to a temporary cache, not the user's home."""
    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("MLFACTORY_CACHE")
    os.environ["MLFACTORY_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("MLFACTORY_CACHE", None)
    else:
        os.environ["MLFACTORY_CACHE"] = previous


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three symbols of 2,500 one-minute bars with the planted signal through prepare, horizons 5 and 20."""
    return make_sample_splits(tmp_path_factory.mktemp("data") / "sample", n_bars=2500, **TEST_PREPARE)


def quiet_trainer(root: Path, name: str, max_epochs: int = 2, **kwargs):
    """A Trainer without progress bar or summary that writes its run record under ``root``."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from mlfactory import RunRecord

    return L.Trainer(
        max_epochs=max_epochs,
        logger=TensorBoardLogger(save_dir=str(root / "lightning_logs"), name=name),
        callbacks=[RunRecord(), ModelCheckpoint(monitor="val_loss", filename="best", save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.fixture
def make_trainer(tmp_path: Path):
    """``quiet_trainer`` under this test's ``tmp_path``."""

    def build(max_epochs: int = 2, name: str = "run", **kwargs):
        return quiet_trainer(tmp_path, name, max_epochs, **kwargs)

    return build


@pytest.fixture(scope="session")
def fit_recorded(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Fit a registered model on the sample splits with the run record: ``(model, datamodule, trainer)``.

    For module-scoped fixtures that fit once and let several tests inspect the result.
    """
    import lightning as L

    from mlfactory import FactoryDataModule, create_model

    def fit(name: str, params: dict, max_epochs: int = 3, **data):
        L.seed_everything(0)
        model = create_model(name, **params)
        datamodule = FactoryDataModule(data_dir=str(sample_dir), horizon=5, **data)
        trainer = quiet_trainer(tmp_path_factory.mktemp(name), name, max_epochs)
        trainer.fit(model, datamodule=datamodule)
        return model, datamodule, trainer

    return fit


CONTRACT_BARS = 4000
CONTRACT_SIGNAL_STRENGTH = 0.3
"""Drift of the contract suite's planted-signal variant (the no-signal twin has none)."""


@pytest.fixture(scope="session")
def contract_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """The planted-signal and the no-signal variant at one size, for the contract suite."""
    root = tmp_path_factory.mktemp("contract")
    return {
        signal: make_sample_splits(root / ("signal" if signal else "nosignal"), signal=signal, n_bars=CONTRACT_BARS,
                                   signal_strength=CONTRACT_SIGNAL_STRENGTH,
                                   **TEST_PREPARE)
        for signal in (True, False)
    }


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size, read_only)``: a real, small tmpfs mounted under ``tmp_path``; unmounted afterwards.

    For full-disk, read-only and mount-point cases: root writes into a directory made read-only with
    chmod, so only a real file system proves them. Mounting needs root (this project's machines and
    CI); elsewhere the test is skipped with the reason.
    """
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}); needs root and "
                        "CAP_SYS_ADMIN")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)  # lazy: a writer thread may still hold a file
