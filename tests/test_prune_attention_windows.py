"""Swin's window attention prunes exactly: window partition and reverse, cyclic shifts (roll) with their
attention mask, a relative position bias table sliced with the heads, patch merging along the channels."""

from attention_models import Swin
from prune_checks import prune_and_check

from slimkit.pruning import analyze

SHAPE = [1, 3, 16, 16]


def test_window_and_shifted_window_attention_prune_heads_and_mlp_exactly(tmp_path):
    ratios = {"blocks.0.attn.qkv": 0.5, "blocks.1.attn.qkv": 0.5, "blocks.1.mlp.fc1": 0.3}
    model, graph, result = prune_and_check(Swin, SHAPE, ratio=ratios, tmp_path=tmp_path, round_to=1)
    heads = graph.group("blocks.1.attn.qkv")
    assert ("blocks.1.attn", "relative_position_bias_table", 1) in heads.members
    attn = model.blocks[1].attn
    assert attn.num_heads == 1 and attn.relative_position_bias_table.shape == [49, 1]
    assert attn.qkv.weight.shape == [16, 3 * 8] and model.blocks[1].mlp.fc1.weight.shape == [16, 45]


def test_the_stream_reaches_every_window_and_the_merged_patches_are_their_own_width():
    graph = analyze(Swin(), SHAPE)
    stream = graph.group("patch_embed")
    assert stream.kind == "embed" and stream.prunable
    assert {"patch_embed", "blocks.0.attn.proj", "blocks.1.mlp.fc2"} <= set(stream.roots)
    # The four 2x2 neighbours concatenated along C: every stream channel reaches the merging norm 4 times.
    assert sum(1 for s in stream.slices if (s.layer, s.tensor) == ("merge.norm", "weight")) == 4
    assert graph.group("merge.reduction").prunable


def test_the_embedding_width_of_a_swin_stage_prunes_when_asked(tmp_path):
    # LayerNorms over the stream change with its channels: pruned, not equal to the masked model.
    model, graph, result = prune_and_check(Swin, SHAPE, ratio={"patch_embed": 0.25}, tmp_path=tmp_path, round_to=1,
                                           exact=False, prune_embed=True)
    assert model.patch_embed.weight.shape[0] == 12 and model.merge.norm.weight.shape == [48]
    assert model.blocks[0].attn.qkv.weight.shape == [12, 48]
