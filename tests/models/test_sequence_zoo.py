"""inceptiontime, resnet1d, patchtst, itransformer, tft and n_beats: output shape, sample weights,
checkpoint round trip, and what makes each model what its paper says. Above-chance and CLI runs are
in the shared contract suite."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import ModelError
from mlfactory.models.neural.inceptiontime import InceptionTimeModel, kernel_sizes
from mlfactory.models.neural.itransformer import ITransformerModel
from mlfactory.models.neural.n_beats import NBeatsModel
from mlfactory.models.neural.patchtst import PatchTSTModel, patch_count
from mlfactory.models.neural.resnet1d import ResNet1DModel
from mlfactory.models.neural.tft import TFTModel

SEQ_LEN = 16
TINY = {
    "inceptiontime": {"n_filters": 4, "bottleneck_size": 4, "kernel_size": 8, "depth": 3},
    "resnet1d": {"n_filters": 4},
    # channels=None: the papers' per-feature models, whose properties the tests below check
    "patchtst": {"patch_len": 4, "stride": 2, "d_model": 8, "n_heads": 2, "num_layers": 1, "d_ff": 16, "channels": None},
    "itransformer": {"d_model": 8, "n_heads": 2, "num_layers": 1, "d_ff": 16, "channels": None},
    "tft": {"hidden_size": 8, "n_heads": 2, "channels": None},
    "n_beats": {"num_stacks": 1, "num_blocks": 2, "num_layers": 2, "layer_width": 16, "channels": None},
}
CLASSES = {
    "inceptiontime": InceptionTimeModel,
    "resnet1d": ResNet1DModel,
    "patchtst": PatchTSTModel,
    "itransformer": ITransformerModel,
    "tft": TFTModel,
    "n_beats": NBeatsModel,
}
WINDOWED = {"patchtst", "itransformer", "n_beats"}  # layers sized by the window length


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy machine spinning threads slow them a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny(name: str, n_features: int = 4, **overrides):
    torch.manual_seed(0)
    sizes = {"n_steps": SEQ_LEN} if name in WINDOWED else {}
    return create_model(name, n_features=n_features, **{**TINY[name], **sizes, **overrides})


def predict_all(model, batches) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model.predict_proba(batch) for batch in batches])


# --- every model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_maps_a_window_batch_to_three_logits(name):
    model = tiny(name).eval()
    assert isinstance(model, CLASSES[name])
    assert model(torch.randn(5, SEQ_LEN, 4)).shape == (5, 3)


@pytest.mark.parametrize("name", sorted(TINY))
def test_sample_weights_weigh_the_loss(name):
    model = tiny(name).eval()
    torch.manual_seed(1)
    batch = {"x": torch.randn(6, SEQ_LEN, 4), "y": torch.tensor([0, 1, 2, 0, 1, 2])}
    weights = torch.tensor([3.0, 0.0, 1.0, 0.5, 2.0, 0.0])
    with torch.no_grad():
        per_sample = F.cross_entropy(model(batch["x"]), batch["y"], reduction="none")
        loss, _ = model.loss_and_probs({**batch, "w": weights})
        unweighted, _ = model.loss_and_probs({**batch, "w": torch.ones(6)})
    torch.testing.assert_close(loss, (per_sample * weights).sum() / weights.sum())
    torch.testing.assert_close(unweighted, per_sample.mean())
    assert not torch.isclose(loss, unweighted)


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoint_round_trip_gives_identical_predictions(name, sample_dir, make_trainer):
    torch.manual_seed(0)
    model = create_model(name, learning_rate=3e-3, **TINY[name])  # sizes unset: read from the data
    datamodule = FactoryDataModule(data_dir=str(sample_dir), seq_len=SEQ_LEN, batch_size=256)
    trainer = make_trainer(max_epochs=1, name=name, limit_train_batches=3, limit_val_batches=2)
    trainer.fit(model, datamodule=datamodule)

    restored = CLASSES[name].load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert restored.hparams.n_features == datamodule.container.n_features
    if name in WINDOWED:
        assert restored.hparams.n_steps == SEQ_LEN
    batches = [batch for _, batch in zip(range(2), datamodule.test_dataloader())]
    torch.testing.assert_close(predict_all(restored, batches), predict_all(model, batches), rtol=0, atol=0)


# --- models sized by the window ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_windowed_models_refuse_another_window_length(name, sample_dir, make_trainer):
    model = tiny(name, n_features=None, n_steps=12)
    datamodule = FactoryDataModule(data_dir=str(sample_dir), seq_len=SEQ_LEN)
    with pytest.raises(ModelError, match=rf"n_steps=12 rows but the data's seq_len is {SEQ_LEN}.*--data.seq_len 12"):
        make_trainer(max_epochs=1).fit(model, datamodule=datamodule)
    with pytest.raises(ModelError, match=r"windows of n_steps=12 rows but got 16"):
        tiny(name, n_steps=12)(torch.zeros(2, 16, 4))


def test_windowed_model_needs_n_steps_without_a_data_module(make_trainer):
    model = create_model("n_beats", n_features=4, **TINY["n_beats"])
    assert model.net is None  # n_features alone does not size the input layer
    loader = torch.utils.data.DataLoader([{"x": torch.zeros(SEQ_LEN, 4), "y": 0, "w": 1.0}], batch_size=1)
    with pytest.raises(ModelError, match=r"n_steps \(the window length\) is unset and no data module tells it"):
        make_trainer(max_epochs=1).fit(model, train_dataloaders=loader)


# --- inceptiontime and resnet1d -----------------------------------------------------------------


def test_inceptiontime_defaults_are_the_papers_layout_at_cpu_sizes_and_its_network_is_reachable():
    model = InceptionTimeModel(n_features=3)
    net = model.net
    assert kernel_sizes(model.hparams.kernel_size) == [20, 10, 5]
    assert len(net.inception) == 6 and len(net.shortcuts) == 2  # a shortcut after every third module
    assert [conv[1].kernel_size[0] for conv in net.inception[1].convs] == [20, 10, 5]
    assert net.inception[1].bottleneck.out_channels == 16 and net.head.in_features == 4 * 16
    assert len(InceptionTimeModel(use_residual=False, n_features=3).net.shortcuts) == 0
    paper = InceptionTimeModel(n_filters=32, bottleneck_size=32, kernel_size=40, n_features=3)
    assert [conv[1].kernel_size[0] for conv in paper.net.inception[1].convs] == [40, 20, 10]
    assert paper.net.inception[1].bottleneck.out_channels == 32 and paper.net.head.in_features == 4 * 32


def test_inceptiontime_convolutions_pad_like_keras_same():
    """Each branch reads its own slice of one shared padding: what ``ConstantPad1d`` + ``Conv1d`` would give."""
    module = InceptionTimeModel(n_filters=2, bottleneck_size=2, kernel_size=8, n_features=3).net.inception[1].eval()
    h = torch.randn(2, 8, 11)
    with torch.no_grad():
        squeezed = module.bottleneck(h)
        expected = [conv(squeezed) for conv in module.convs]  # each Sequential pads for its own kernel
        expected.append(module.pool(h))
        torch.testing.assert_close(module(h), module.out(torch.cat(expected, dim=1)))


@pytest.mark.parametrize("seq_len", [7, 30])
def test_inceptiontime_keeps_the_window_length_even_with_kernels_longer_than_it(seq_len):
    net = InceptionTimeModel(n_filters=2, bottleneck_size=2, n_features=3).net.eval()
    assert net.features(torch.randn(2, seq_len, 3)).shape == (2, 8, seq_len)


def test_inceptiontime_skips_the_bottleneck_of_a_single_channel():
    net = InceptionTimeModel(n_filters=2, bottleneck_size=2, kernel_size=8, n_features=1).net
    assert isinstance(net.inception[0].bottleneck, torch.nn.Identity)
    assert isinstance(net.inception[1].bottleneck, torch.nn.Conv1d)


def resnet_layout(model: ResNet1DModel) -> tuple[list[int], list[list[int]]]:
    """The channels of each residual block and the kernel lengths of its three convolutions."""
    widths = [block.body[-1][1].num_features for block in model.net.blocks]
    convs = [[m[0][1] for m in block.body if isinstance(m, torch.nn.Sequential)] for block in model.net.blocks]
    return widths, [[conv.kernel_size[0] for conv in block] for block in convs]


def test_resnet1d_defaults_are_the_papers_layout_at_half_width_and_its_network_is_reachable():
    model = ResNet1DModel(n_features=3)
    assert resnet_layout(model) == ([32, 64, 64], [[8, 5, 3]] * 3)
    assert isinstance(model.net.blocks[2].shortcut, torch.nn.BatchNorm1d)  # same width: no projection
    assert model.net.eval()(torch.randn(2, 30, 3)).shape == (2, 3)
    assert resnet_layout(ResNet1DModel(n_filters=64, n_features=3)) == ([64, 128, 128], [[8, 5, 3]] * 3)


def test_a_resnet1d_folder_saved_at_the_papers_width_loads_as_the_model_it_was(tmp_path):
    """A bundle or an ensemble member written when the default was 64 filters: rebuilt from today's
    defaults (32), then its folder, it must come back at 64, with the same predictions."""
    torch.manual_seed(0)
    model = ResNet1DModel(n_filters=64, n_features=3).eval()
    model.export_native(tmp_path)
    restored = create_model("resnet1d", n_features=3).load_native(tmp_path)
    assert restored.hparams.n_filters == 64 and resnet_layout(restored)[0] == [64, 128, 128]
    x = torch.randn(4, 12, 3)
    with torch.inference_mode():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


# --- patchtst ------------------------------------------------------------------------------------


def test_patchtst_backbone_is_channel_independent():
    net = tiny("patchtst").net.eval()
    x = torch.randn(3, SEQ_LEN, 4)
    changed = x.clone()
    changed[:, :, 2] = torch.randn(3, SEQ_LEN)
    with torch.no_grad():
        before, after = net.representation(x), net.representation(changed)
    others = [0, 1, 3]
    torch.testing.assert_close(after[:, others], before[:, others], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 2], before[:, 2])


def test_patchtst_pads_the_end_and_counts_patches():
    assert [patch_count(30, 16, 8), patch_count(512, 16, 8), patch_count(SEQ_LEN, 4, 2)] == [3, 64, 8]
    net = tiny("patchtst").net
    x = torch.randn(2, SEQ_LEN, 4)
    patches = net.patches(x)
    assert patches.shape == (2, 4, 8, 4)
    series = x.transpose(1, 2)
    assert torch.equal(patches[:, :, 0], series[:, :, :4])
    assert torch.equal(patches[:, :, -1], series[:, :, [14, 15, 15, 15]])  # the end is padded with the last value


def test_patchtst_refuses_a_patch_longer_than_the_padded_window():
    with pytest.raises(ModelError, match=r"patch_len=32 is longer than the end-padded window \(n_steps=16 \+ stride=8"):
        create_model("patchtst", patch_len=32, stride=8, n_features=3, n_steps=16)


# --- itransformer --------------------------------------------------------------------------------


def test_itransformer_embeds_each_variable_series_as_one_token():
    net = tiny("itransformer").net
    assert net.embed[0].in_features == SEQ_LEN  # Linear(seq_len -> d_model)
    assert net.eval().tokens(torch.randn(2, SEQ_LEN, 4)).shape == (2, 4, 8)


def test_itransformer_tokens_permute_with_the_variables():
    net = tiny("itransformer").net.eval()
    x = torch.randn(3, SEQ_LEN, 4)
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(net.tokens(x[:, :, order]), net.tokens(x)[:, order], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(net(x[:, :, order]), net(x), atol=1e-4)  # the flatten head knows the order


# --- tft -----------------------------------------------------------------------------------------


def test_tft_variable_selection_weights_sum_to_one_per_step():
    model = tiny("tft").eval()
    with torch.no_grad():
        weights = model.variable_weights(torch.randn(3, SEQ_LEN, 4))
    assert weights.shape == (3, SEQ_LEN, 4) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, SEQ_LEN))


def test_tft_attention_is_causal_and_heads_share_the_values():
    attention = tiny("tft").net.attention.eval()
    assert attention.value.out_features == attention.d_head  # one value projection for all heads
    with torch.no_grad():
        scores = attention.scores(torch.randn(2, 5, 8))
    assert scores.shape == (2, 2, 5, 5)
    assert torch.equal(scores.triu(1), torch.zeros_like(scores))  # no step reads a later one
    torch.testing.assert_close(scores.sum(dim=-1), torch.ones(2, 2, 5))


# --- n_beats -------------------------------------------------------------------------------------


def test_n_beats_is_doubly_residual():
    net = tiny("n_beats", num_stacks=2).net.eval()
    x = torch.randn(3, SEQ_LEN, 4)
    residual, logits, seen = x.flatten(1), torch.zeros(3, 3), []
    with torch.no_grad():
        for block in net.blocks:
            seen.append(residual)
            backcast, forecast = block(residual)
            residual, logits = residual - backcast, logits + forecast
        torch.testing.assert_close(net(x), logits)
        # block k reads the input less every earlier backcast
        backcasts = [block(inp)[0] for block, inp in zip(net.blocks, seen)]
        torch.testing.assert_close(seen[3], x.flatten(1) - sum(backcasts[:3]))
    assert len(net.blocks) == 4 and net.blocks[0].backcast.out_features == SEQ_LEN * 4


def test_n_beats_shares_weights_within_a_stack():
    shared = tiny("n_beats", num_stacks=2, num_blocks=3, share_weights=True).net
    separate = tiny("n_beats", num_stacks=2, num_blocks=3).net
    assert shared.blocks[0] is shared.blocks[2] and shared.blocks[0] is not shared.blocks[3]
    n_params = [sum(p.numel() for p in net.parameters()) for net in (shared, separate)]
    assert n_params[1] == 3 * n_params[0]
