"""gru, tcn and transformer: output shape, checkpoint round trip, TCN causality and receptive field,
the attention models' head checks, transformer order sensitivity. Fit, chance level and CLI are in test_contract.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import ModelError
from mlfactory.models.neural.gru import GRUModel
from mlfactory.models.neural.tcn import TCNModel, levels_for, receptive_field
from mlfactory.models.neural.transformer import TransformerModel

SEQ_LEN = 12
TINY = {
    "gru": {"hidden_size": 8, "num_layers": 2},
    "tcn": {"channels": 8, "kernel_size": 3, "receptive_field": SEQ_LEN},
    "transformer": {"d_model": 8, "nhead": 2, "num_layers": 1, "dim_feedforward": 16},
}
CLASSES = {"gru": GRUModel, "tcn": TCNModel, "transformer": TransformerModel}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy machine spinning threads slow them a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def predict_all(model, batches) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model.predict_proba(batch) for batch in batches])


@pytest.mark.parametrize("name", sorted(TINY))
def test_maps_a_window_batch_to_three_logits(name):
    torch.manual_seed(0)
    model = create_model(name, n_features=4, **TINY[name]).eval()
    assert isinstance(model, CLASSES[name])
    assert model(torch.randn(5, SEQ_LEN, 4)).shape == (5, 3)


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoint_round_trip_gives_identical_predictions(name, sample_dir, make_trainer):
    torch.manual_seed(0)
    model = create_model(name, learning_rate=3e-3, **TINY[name])
    datamodule = FactoryDataModule(data_dir=str(sample_dir), seq_len=SEQ_LEN, batch_size=256)
    trainer = make_trainer(max_epochs=1, name=name, limit_train_batches=6, limit_val_batches=2)
    trainer.fit(model, datamodule=datamodule)

    restored = CLASSES[name].load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert restored.hparams.n_features == datamodule.container.n_features
    batches = [batch for _, batch in zip(range(2), datamodule.test_dataloader())]
    torch.testing.assert_close(predict_all(restored, batches), predict_all(model, batches), rtol=0, atol=0)


# --- tcn -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel_size", "weight_norm"), [(2, True), (3, False)])
def test_tcn_output_at_t_ignores_inputs_after_t(kernel_size, weight_norm):
    torch.manual_seed(0)
    net = TCNModel(channels=6, kernel_size=kernel_size, receptive_field=16, weight_norm=weight_norm, n_features=3).net
    net.eval()
    x = torch.randn(4, 16, 3)
    t = 7
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn(4, 16 - t - 1, 3)
    with torch.no_grad():
        before, after = net.features(x), net.features(changed)
    torch.testing.assert_close(after[:, :, : t + 1], before[:, :, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(after[:, :, t + 1 :], before[:, :, t + 1 :])  # later steps do read them


def test_tcn_receptive_field_formula_and_levels():
    assert [receptive_field(3, levels) for levels in (1, 2, 3, 4, 5)] == [5, 13, 29, 61, 125]
    assert [receptive_field(2, levels) for levels in (1, 2, 3)] == [3, 7, 15]
    assert levels_for(3, 1) == 1 and levels_for(3, 29) == 3 and levels_for(3, 30) == 4
    default = TCNModel(n_features=3)
    assert (default.levels(), default.field()) == (5, 125)  # the fewest levels covering 64 steps
    assert len(default.net.blocks) == 5
    assert TCNModel(receptive_field=64, num_levels=2).field() == 13  # num_levels wins


@pytest.mark.parametrize(("kernel_size", "num_levels"), [(2, 3), (3, 2)])
def test_tcn_last_output_sees_exactly_its_receptive_field(kernel_size, num_levels):
    torch.manual_seed(0)
    model = TCNModel(channels=6, kernel_size=kernel_size, num_levels=num_levels, dropout=0.0, n_features=3)
    field = model.field()
    x = torch.randn(8, field + 5, 3, dtype=torch.float64, requires_grad=True)
    model.net.double().features(x)[:, :, -1].sum().backward()
    reads = x.grad.abs().sum(dim=(0, 2)) > 0  # which input steps the last output depends on
    assert reads.tolist() == [False] * 5 + [True] * field


def test_tcn_refuses_a_window_longer_than_its_receptive_field(sample_dir, make_trainer):
    model = create_model("tcn", channels=4, kernel_size=3, receptive_field=13)  # 2 levels see 13 steps
    datamodule = FactoryDataModule(data_dir=str(sample_dir), seq_len=20)
    with pytest.raises(ModelError, match=r"receptive field 13 .* shorter than the data's seq_len=20.*receptive_field 20"):
        make_trainer(max_epochs=1).fit(model, datamodule=datamodule)


# --- transformer -----------------------------------------------------------------------------------


def test_transformer_refuses_d_model_not_divisible_by_nhead():
    with pytest.raises(ModelError, match=r"TransformerModel \(transformer\): d_model=10 is not divisible by nhead=4"):
        create_model("transformer", d_model=10, nhead=4, n_features=3)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("transformer", {"d_model": 10, "nhead": 4, "n_features": 3}, "d_model=10 is not divisible by nhead=4"),
        ("itransformer", {"d_model": 10, "n_heads": 4, "n_features": 3, "n_steps": 8},
         "d_model=10 is not divisible by n_heads=4"),
        ("patchtst", {"d_model": 10, "n_heads": 4, "n_features": 3, "n_steps": 16},
         "d_model=10 is not divisible by n_heads=4"),
        ("tft", {"hidden_size": 10, "n_heads": 4, "n_features": 3}, "hidden_size=10 is not divisible by n_heads=4"),
        ("multires", {"encoder": "transformer", "hidden_size": 10, "nhead": 4, "lookbacks": {"1h": 4}},
         "hidden_size=10 is not divisible by nhead=4"),
        # zero heads: a ModelError, not a ZeroDivisionError from the modulo
        ("multires", {"encoder": "transformer", "hidden_size": 8, "nhead": 0, "lookbacks": {"1h": 4}},
         "hidden_size=8 is not divisible by nhead=0"),
    ],
)
def test_attention_models_refuse_a_width_their_heads_do_not_divide(name, params, message):
    heads = message.split(" by ")[1].split("=")[0]
    width = message.split("=")[0]
    with pytest.raises(ModelError, match=rf"{message}; every head gets {width} / {heads} dimensions, so pick "
                                         rf"--model\.{width} as a multiple of --model\.{heads}"):
        create_model(name, **params)


def test_multires_with_recurrent_branches_ignores_nhead():
    assert create_model("multires", encoder="lstm", hidden_size=10, nhead=4, lookbacks={"1h": 4}).net is not None


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_transformer_positional_encoding_makes_it_order_sensitive(pooling):
    torch.manual_seed(0)
    model = create_model("transformer", pooling=pooling, n_features=3, **TINY["transformer"]).eval()
    x = torch.randn(4, SEQ_LEN, 3)
    # reverse every row but the last, so "last" pooling still reads the same final row
    order = torch.cat([torch.arange(SEQ_LEN - 2, -1, -1), torch.tensor([SEQ_LEN - 1])])
    with torch.no_grad():
        assert not torch.allclose(model(x[:, order]), model(x), atol=1e-4)
        model.net.position = nn.Identity()  # without positions, attention cannot tell the order
        torch.testing.assert_close(model(x[:, order]), model(x), rtol=1e-5, atol=1e-5)
