"""Channel alignment by default: pruned groups keep a multiple of the CPU's channel block (16 with
AVX-512, else 8; the suite pins 8, tests/conftest.py), 4 or 2 for small layers, so the kept count
stays near the asked ratio; `round_to` overrides."""

import dataclasses

import pytest

import slimkit
from slimkit import FilterPruning
from slimkit.core import cpu
from slimkit.pruning import alignment, analyze, prune
from slimkit.pruning.alignment import channel_step
from slimkit.pruning.selection import channels_to_keep

SHAPE = [1, 3, 32, 32]


@pytest.mark.parametrize("channels, step", [(512, 8), (64, 8), (32, 8), (31, 4), (16, 4), (8, 2), (4, 1), (3, 1)])
def test_default_step_shrinks_for_small_layers(channels, step):
    assert channel_step(channels) == step
    assert channel_step(channels, round_to=16) == 16  # an explicit round_to is used as given


REAL_DEFAULT = alignment.default_alignment  # before the suite's fixture pins it


@pytest.mark.parametrize("flags, block", [(["avx2", "fma", "avx512f", "avx512_vnni"], 16), (["avx2", "fma"], 8),
                                          ([], 8)])
def test_default_multiple_is_the_cpu_channel_block(monkeypatch, flags, block):
    monkeypatch.setattr(cpu, "cpu_features", lambda: flags)
    REAL_DEFAULT.cache_clear()
    try:
        assert REAL_DEFAULT() == block
        monkeypatch.setattr(alignment, "default_alignment", REAL_DEFAULT)
        assert channel_step(512) == block and channel_step(64) == block
        assert channel_step(48) == 8  # under 4 blocks of 16 the multiple halves
    finally:
        REAL_DEFAULT.cache_clear()


def test_rounding_stays_within_an_eighth_of_the_layer():
    for channels in range(1, 300):
        for ratio in (0.1, 0.3, 0.5, 0.7):
            kept = channels_to_keep(channels, ratio, None)
            assert kept % channel_step(channels) == 0 or kept == channels
            asked = channels - round(channels * ratio)
            assert abs(kept - asked) <= max(1, channels / 8), (channels, ratio, kept)


def test_prune_keeps_channel_counts_at_the_multiple():
    model = slimkit.build_model("resnet20", num_classes=10, in_channels=3)
    graph = analyze(model, SHAPE)
    result = prune(model, SHAPE, ratios=0.3, graph=graph)
    kept = {name: after for name, before, after in result.layers}
    assert kept and all(after % channel_step(before) == 0 for name, before, after in result.layers)
    assert any(before >= 32 and after % 8 == 0 for _, before, after in result.layers)
    # the model really has these widths
    layers = dict(model.named_sublayers())
    for name, after in kept.items():
        assert layers[name].weight.shape[0] == after


def test_round_to_one_prunes_exactly_the_ratio():
    model = slimkit.build_model("resnet20", num_classes=10, in_channels=3)
    result = prune(model, SHAPE, ratios=0.3, round_to=1)
    assert all(after == before - round(before * 0.3) for _, before, after in result.layers)


def test_filter_pruning_and_scan_default_to_the_alignment():
    fields = {f.name: f.default for f in dataclasses.fields(FilterPruning)}
    assert fields["round_to"] is None
    import inspect

    from slimkit.pruning.sensitivity import sensitive

    assert inspect.signature(sensitive).parameters["round_to"].default is None
    assert inspect.signature(prune).parameters["round_to"].default is None
