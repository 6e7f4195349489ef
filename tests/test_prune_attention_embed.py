"""The embedding width along a residual stream: every LayerNorm, qkv input, projection output, position
embedding, class token and the head that read the stream shrink together; off unless asked (prune_embed)."""

import pytest
from attention_models import ViT
from prune_checks import prune_and_check

import slimkit
from slimkit import ConfigError, FilterPruning
from slimkit.pruning import analyze, prune

SHAPE = [1, 3, 16, 16]


def test_the_stream_group_holds_everything_that_reads_the_stream():
    stream = analyze(ViT(distilled=True), SHAPE).group("patch_embed")
    assert stream.kind == "embed"
    assert set(stream.roots) == {"patch_embed", "blocks.0.attn.proj", "blocks.0.mlp.fc2", "blocks.1.attn.proj",
                                 "blocks.1.mlp.fc2"}
    for member in [("", "pos_embed", 2), ("", "cls_token", 2), ("", "dist_token", 2), ("norm", "weight", 0),
                   ("blocks.1.norm2", "bias", 0), ("blocks.0.attn.qkv", "weight", 0), ("head", "weight", 0),
                   ("head_dist", "weight", 0), ("blocks.1.mlp.fc1", "weight", 0)]:
        assert member in stream.members


def test_embedding_width_prunes_when_asked_and_runs_saves_and_trains(tmp_path):
    # LayerNorms normalize over the stream: the pruned model is not the masked one (finetune after).
    model, graph, result = prune_and_check(lambda: ViT(distilled=True), SHAPE, ratio={"patch_embed": 0.25},
                                           tmp_path=tmp_path, round_to=1, exact=False, prune_embed=True)
    assert model.pos_embed.shape == [1, 18, 24] and model.cls_token.shape == [1, 1, 24]
    assert model.blocks[0].norm1.weight.shape == [24] and model.blocks[0].norm1._normalized_shape == [24]
    assert model.head.weight.shape == [24, 10] and model.blocks[0].attn.num_heads == 4


def test_embedding_width_is_left_alone_by_default_with_the_option_in_the_reason():
    result = prune(ViT(), SHAPE, ratios=0.5, round_to=1)
    reason = result.skipped["patch_embed"]
    assert reason == "embedding width (LayerNorms normalize it) not pruned (prune_embed is false)"
    result = prune(ViT(), SHAPE, ratios=0.5, round_to=1, prune_heads=False, prune_mlp=False, prune_embed=True)
    assert {name for name, _, _ in result.layers} >= {"patch_embed"}
    assert "prune_heads is false" in result.skipped["blocks.0.attn.qkv"]
    assert "prune_mlp is false" in result.skipped["blocks.0.mlp.fc1"]


def test_ratios_that_name_a_unit_switched_off_are_refused_naming_the_option():
    with pytest.raises(ConfigError, match="prune_embed is false"):
        prune(ViT(), SHAPE, ratios={"patch_embed": 0.5})
    with pytest.raises(ConfigError, match="prune_heads"):
        prune(ViT(), SHAPE, ratios=0.3, prune_heads="yes")


def test_the_stage_options_choose_the_units_and_note_the_rest(digits, tmp_path):
    with pytest.raises(ConfigError, match="prune_heads"):
        FilterPruning(ratios=0.3, prune_heads="no")
    stage = FilterPruning(ratios=0.5, round_to=1, prune_mlp=False)
    ctx = slimkit.Context(data=digits, engine=None, input_shape=SHAPE, out_dir=tmp_path)
    model = stage.apply(ViT(), ctx)
    assert model.blocks[0].attn.num_heads == 2 and model.blocks[0].mlp.fc1.weight.shape == [32, 128]
    assert any("blocks.0.mlp.fc1 not pruned: MLP hidden width not pruned (prune_mlp is false)" in n
               for n in ctx.notes)
    assert ctx.metrics["channels"]["blocks.0.attn.qkv"] == [4, 2]
