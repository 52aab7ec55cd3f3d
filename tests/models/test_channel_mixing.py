"""patchtst and itransformer: the learned feature mix (``channels``), the faithful per-feature mode
(``channels=None``), and checkpoints from before the argument existed."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from mlfactory import FactoryDataModule, create_model
from mlfactory.models.neural.itransformer import ITransformerModel
from mlfactory.models.neural.patchtst import PatchTSTModel

SMALL = {
    "patchtst": {"patch_len": 4, "stride": 2, "d_model": 8, "n_heads": 2, "d_ff": 16, "num_layers": 1},
    "itransformer": {"d_model": 8, "n_heads": 2, "d_ff": 16, "num_layers": 1},
}
CLASSES = {"patchtst": PatchTSTModel, "itransformer": ITransformerModel}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_default_mixes_the_features_into_16_channels(name):
    model = create_model(name, n_features=40, n_steps=10, **SMALL[name])
    assert model.hparams.channels == 16
    assert isinstance(model.net.mix, nn.Linear) and (model.net.mix.in_features, model.net.mix.out_features) == (40, 16)
    wide = create_model(name, n_features=400, n_steps=10, **SMALL[name])
    # only the mix grows with the features: the encoder and head are the same size
    mix_growth = 360 * 16
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in wide.parameters()) - n_params == mix_growth
    assert wide(torch.randn(3, 10, 400)).shape == (3, 3)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_channels_none_is_the_per_feature_model(name):
    model = create_model(name, n_features=5, n_steps=10, channels=None, **SMALL[name])
    assert isinstance(model.net.mix, nn.Identity)
    wider = create_model(name, n_features=6, n_steps=10, channels=None, **SMALL[name])
    assert sum(p.numel() for p in wider.parameters()) > sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_checkpoint_from_before_channels_loads_as_the_per_feature_model(name, sample_dir, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, channels=None, **SMALL[name])
    datamodule = FactoryDataModule(data_dir=str(sample_dir), seq_len=10, batch_size=64)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["hyper_parameters"]["channels"]  # as written before the argument existed
    torch.save(checkpoint, path)

    restored = CLASSES[name].load_from_checkpoint(path)
    assert restored.hparams.channels is None
    x = torch.randn(4, 10, datamodule.container.n_features)
    model.eval()
    restored.eval()
    with torch.inference_mode():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_native_folder_from_before_channels_loads_as_the_per_feature_model(name, tmp_path):
    """What bundles and ensembles read (``export_native``/``load_native``), written before ``channels`` existed."""
    import json

    torch.manual_seed(0)
    model = create_model(name, channels=None, n_features=6, n_steps=10, **SMALL[name]).eval()
    model.export_native(tmp_path)
    saved = json.loads((tmp_path / "hparams.json").read_text())
    del saved["init_args"]["channels"]
    (tmp_path / "hparams.json").write_text(json.dumps(saved))

    # rebuilt as a bundle does: from the recorded arguments (today's default channels=16), then its folder
    restored = create_model(name, n_features=6, n_steps=10, **SMALL[name]).load_native(tmp_path)
    assert restored.hparams.channels is None
    x = torch.randn(4, 10, 6)
    with torch.inference_mode():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
