"""patchtst, itransformer, tft and n_beats: the learned feature mix (``channels``), the faithful
per-feature mode (``channels=None``), and checkpoints from before the argument existed; saved models
from before a default changed (inceptiontime's sizes, tft's hidden size and channels) load as the model they were."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from mlfactory import FactoryDataModule, create_model
from mlfactory.models.neural.inceptiontime import InceptionTimeModel
from mlfactory.models.neural.itransformer import ITransformerModel
from mlfactory.models.neural.n_beats import NBeatsModel
from mlfactory.models.neural.patchtst import PatchTSTModel
from mlfactory.models.neural.tft import TFTModel

SMALL = {
    "patchtst": {"patch_len": 4, "stride": 2, "d_model": 8, "n_heads": 2, "d_ff": 16, "num_layers": 1},
    "itransformer": {"d_model": 8, "n_heads": 2, "d_ff": 16, "num_layers": 1},
    "tft": {"hidden_size": 8, "n_heads": 2},
    "n_beats": {"num_stacks": 1, "num_blocks": 2, "num_layers": 2, "layer_width": 16},
}
CLASSES = {"patchtst": PatchTSTModel, "itransformer": ITransformerModel, "tft": TFTModel, "n_beats": NBeatsModel}
WINDOWED = {"patchtst", "itransformer", "n_beats"}


def sized(name: str, n_features: int, **args) -> dict:
    """Arguments that build ``name`` for ``n_features`` features over 10-step windows."""
    return {"n_features": n_features, **({"n_steps": 10} if name in WINDOWED else {}), **SMALL[name], **args}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


DEFAULT_CHANNELS = {"patchtst": 16, "itransformer": 16, "tft": 8, "n_beats": 16}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_default_mixes_the_features_into_a_few_channels(name):
    model = create_model(name, **sized(name, 40))
    k = DEFAULT_CHANNELS[name]
    assert model.hparams.channels == k
    assert isinstance(model.net.mix, nn.Linear) and (model.net.mix.in_features, model.net.mix.out_features) == (40, k)
    wide = create_model(name, **sized(name, 400))
    # only the mix grows with the features: the encoder and head are the same size
    mix_growth = 360 * k
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in wide.parameters()) - n_params == mix_growth
    assert wide(torch.randn(3, 10, 400)).shape == (3, 3)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_channels_none_is_the_per_feature_model(name):
    model = create_model(name, **sized(name, 5, channels=None))
    assert isinstance(model.net.mix, nn.Identity)
    wider = create_model(name, **sized(name, 6, channels=None))
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
    model = create_model(name, **sized(name, 6, channels=None)).eval()
    model.export_native(tmp_path)
    saved = json.loads((tmp_path / "hparams.json").read_text())
    del saved["init_args"]["channels"]
    (tmp_path / "hparams.json").write_text(json.dumps(saved))

    # rebuilt as a bundle does: from the recorded arguments (today's default channels), then its folder
    restored = create_model(name, **sized(name, 6)).load_native(tmp_path)
    assert restored.hparams.channels is None
    x = torch.randn(4, 10, 6)
    with torch.inference_mode():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


# the defaults a saved model was built with before they changed, and a stand-in for "today's defaults"
FORMER_DEFAULTS = {
    "inceptiontime": ({"n_filters": 32, "bottleneck_size": 32, "kernel_size": 40}, {"depth": 3}),
    "tft": ({"hidden_size": 64, "channels": None}, {"n_heads": 2}),
}


def test_the_defaults_changed_for_cpu_sizes_are_not_the_former_ones():
    assert {k: InceptionTimeModel(n_features=3).hparams[k] for k in FORMER_DEFAULTS["inceptiontime"][0]} == {
        "n_filters": 16, "bottleneck_size": 16, "kernel_size": 20}
    assert (TFTModel(n_features=3).hparams.hidden_size, TFTModel(n_features=3).hparams.channels) == (32, 8)


def test_a_tft_folder_saved_with_16_channels_loads_as_the_model_it_was(tmp_path):
    # tft's default went from 16 channels to 8: an ensemble member saved before keeps its 16
    torch.manual_seed(0)
    model = create_model("tft", n_features=3, hidden_size=8, n_heads=2, channels=16).eval()
    model.export_native(tmp_path)
    restored = create_model("tft", n_features=3, hidden_size=8, n_heads=2).load_native(tmp_path)
    assert restored.hparams.channels == 16 and restored.net.mix.out_features == 16
    x = torch.randn(4, 12, 3)
    with torch.inference_mode():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(FORMER_DEFAULTS))
def test_a_native_folder_from_before_a_default_changed_loads_as_the_model_it_was(name, tmp_path):
    """An ensemble member is rebuilt from its spec, which names no sizes: today's defaults, then its folder."""
    import json

    former, common = FORMER_DEFAULTS[name]
    torch.manual_seed(0)
    model = create_model(name, n_features=3, **former, **common).eval()
    model.export_native(tmp_path)
    if name == "tft":  # written before ``channels`` existed
        saved = json.loads((tmp_path / "hparams.json").read_text())
        del saved["init_args"]["channels"]
        (tmp_path / "hparams.json").write_text(json.dumps(saved))

    restored = create_model(name, n_features=3, **common).load_native(tmp_path)
    assert {k: restored.hparams[k] for k in former} == former
    x = torch.randn(4, 12, 3)
    with torch.inference_mode():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_a_native_folder_with_a_changed_default_of_the_wrong_type_is_refused(tmp_path):
    import json

    from mlfactory.errors import MLFactoryError

    create_model("inceptiontime", n_features=3, depth=3).export_native(tmp_path)
    saved = json.loads((tmp_path / "hparams.json").read_text())
    saved["init_args"]["n_filters"] = "thirty-two"
    (tmp_path / "hparams.json").write_text(json.dumps(saved))
    with pytest.raises(MLFactoryError, match="n_filters='thirty-two' is not a int"):
        create_model("inceptiontime", n_features=3, depth=3).load_native(tmp_path)
