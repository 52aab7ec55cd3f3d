"""The progress bar of the trainer commands: Lightning's tqdm bar, readable in notebooks and logs too."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from lightning.pytorch.callbacks import Callback, TQDMProgressBar


class FactoryProgressBar(TQDMProgressBar):
    """Lightning's :class:`TQDMProgressBar`, with every bar on one line where the output is no terminal.

    Lightning draws the validation bar on a second line below the epoch bar, moving the cursor with
    ANSI escapes. A Jupyter cell (without ipywidgets) or a log file shows those escapes as literal ``[A``
    and a new line per update; there, the validation bar takes the epoch bar's line while it runs
    instead. With ipywidgets installed, Lightning's bars are notebook widgets and nest as in a terminal.
    The model's own progress-bar metrics (``samples/s`` of the neural models) are kept; the logger's
    version number (``v_num``), which says nothing about the run, is dropped.

    Use it in a plain Trainer as ``L.Trainer(callbacks=[RunRecord(), FactoryProgressBar()])``.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)

    @staticmethod
    def nests() -> bool:
        """Whether bars may stack on several lines: a terminal, or notebook widgets."""
        widgets = importlib.util.find_spec("ipywidgets") is not None and "ipykernel" in sys.modules
        return widgets or sys.stdout.isatty()

    def init_validation_tqdm(self) -> Any:
        if self.nests():
            return super().init_validation_tqdm()
        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

        has_main_bar = self.trainer.state.fn != "validate"
        return Tqdm(desc=self.validation_description, position=2 * self.process_position, disable=self.is_disabled,
                    leave=not has_main_bar, dynamic_ncols=True, file=sys.stdout, bar_format=self.BAR_FORMAT)

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class FitAnnouncement(Callback):
    """One line on stderr when a fit starts: what trains, on which data, and where the run goes.

    ``fit lstm (52,483 parameters, up to 15 epochs) on the embedded sample data, horizon 5, seq_len 30 -> RUN``
    """

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # every rank builds the line: trainer.log_dir broadcasts, so reading it on rank 0 alone hangs DDP
        line = describe_fit(pl_module, trainer.datamodule, trainer)
        if trainer.is_global_zero:
            print(line, file=sys.stderr)


def describe_fit(model: Any, datamodule: Any, trainer: Any) -> str:
    """The announcement's text (the network is built by now, so its parameters can be counted)."""
    name = getattr(model, "registry_name", "") or type(model).__name__
    details = []
    n_parameters = sum(p.numel() for p in model.parameters())
    if not getattr(model, "fits_once", False) and n_parameters:
        details.append(f"{n_parameters:,} parameters")
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            details.append(f"up to {trainer.max_epochs} epoch{'s' if trainer.max_epochs > 1 else ''}")
    about = f" ({', '.join(details)})" if details else ""
    data_dir = getattr(datamodule, "data_dir", None)
    data = f"on {data_dir}" if data_dir else "on the embedded sample data"
    shape = f"horizon {datamodule.horizon}" if datamodule is not None else ""
    if datamodule is not None and getattr(model, "input_kind", "tabular") == "sequence":
        shape += f", seq_len {datamodule.seq_len}"
    where = trainer.log_dir if trainer.logger is not None else trainer.default_root_dir
    return f"fit {name}{about} {data}, {shape} -> {where}"
