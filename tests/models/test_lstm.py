"""lstm on the neural base: sizing from data, weighted loss, checkpoint round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.models.neural.lstm import LSTMModel


@pytest.fixture(scope="module")
def fitted(fit_recorded):
    params = {"hidden_size": 16, "num_layers": 1, "learning_rate": 3e-3}
    return fit_recorded("lstm", params, max_epochs=2, seq_len=20, batch_size=128)


def predict_all(model, datamodule) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model.predict_proba(batch) for batch in datamodule.test_dataloader()])


def test_network_is_sized_from_the_data(fitted):
    model, datamodule, _ = fitted
    assert model.hparams.n_features == datamodule.container.n_features


def test_checkpoint_round_trip_gives_identical_predictions(fitted):
    model, datamodule, trainer = fitted
    restored = LSTMModel.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    torch.testing.assert_close(predict_all(restored, datamodule), predict_all(model, datamodule), rtol=0, atol=0)


def test_after_fit_the_module_holds_the_best_checkpoint(fitted):
    model, _, trainer = fitted
    best = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, best[name])


def test_best_model_folder_rebuilds_the_network(fitted):
    model, datamodule, trainer = fitted
    folder = Path(trainer.log_dir) / "checkpoints" / "best_model"
    config = json.loads((folder / "hparams.json").read_text())
    rebuilt = create_model("lstm", **config["init_args"])
    rebuilt.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    torch.testing.assert_close(predict_all(rebuilt, datamodule), predict_all(model, datamodule))


def test_loss_is_weighted_by_sample_weights():
    model = create_model("lstm", hidden_size=4, num_layers=1, n_features=3).eval()
    x = torch.randn(6, 5, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    only_first_half = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    loss_weighted, _ = model.loss_and_probs({"x": x, "y": y, "w": only_first_half})
    loss_half, _ = model.loss_and_probs({"x": x[:3], "y": y[:3], "w": torch.ones(3)})
    torch.testing.assert_close(loss_weighted, loss_half)


def test_forward_without_size_says_what_to_do():
    from mlfactory.errors import ModelError

    with pytest.raises(ModelError, match="n_features is unset"):
        create_model("lstm")(torch.zeros(2, 5, 3))


def test_unknown_optimizer_choice_is_refused_before_training(sample_dir, make_trainer):
    from mlfactory.errors import ModelError

    model = create_model("lstm", hidden_size=4, optimizer="rmsprop")
    with pytest.raises(ModelError, match=r"optimizer='rmsprop' is not one of \['adamw', 'adam', 'sgd'\]"):
        make_trainer().fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir), seq_len=5))
