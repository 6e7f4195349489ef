"""Attention with convs around it prunes exactly: PVT's spatial-reduction attention and depthwise-conv MLP,
CvT's conv projections, a MobileViT block (unfolding into patches and folding back), SegFormer."""

from attention_models import PVT, CvT, MobileViT, SegFormer
from prune_checks import prune_and_check

from slimkit.pruning import analyze

SHAPE = [1, 3, 16, 16]


def test_spatial_reduction_attention_and_dwconv_mlp_prune_exactly(tmp_path):
    ratios = {"blocks.0.attn.q": 0.5, "blocks.0.mlp.fc1": 0.3, "blocks.1.mlp.fc1": 0.5}
    model, graph, result = prune_and_check(PVT, SHAPE, ratio=ratios, tmp_path=tmp_path, round_to=1)
    assert graph.group("blocks.0.attn.q").roots == ["blocks.0.attn.q", "blocks.0.attn.kv"]  # q's heads are kv's
    block = model.blocks[0]
    assert block.attn.num_heads == 1 and block.attn.kv.weight.shape == [32, 2 * 16]
    assert block.mlp.dwconv.weight.shape == [90, 1, 3, 3] and block.mlp.dwconv._groups == 90


def test_a_reduction_conv_whose_output_is_reshaped_to_the_input_width_stays_whole():
    # `sr(x).reshape([b, c, -1])` with c the stream's width, as PVT and SegFormer write it.
    graph = analyze(PVT(), SHAPE)
    assert "fixed shape [1, 32, -1]" in graph.skipped()["blocks.0.attn.sr"]
    assert graph.group("blocks.0.attn.sr").kind == "embed"


def test_conv_projections_of_q_k_v_prune_heads_exactly(tmp_path):
    model, graph, result = prune_and_check(CvT, SHAPE, ratio={"blocks.0.attn.proj_q": 0.5, "blocks.1.mlp.fc1": 0.3},
                                           tmp_path=tmp_path, round_to=1)
    assert graph.group("blocks.0.attn.proj_q").roots == [f"blocks.0.attn.proj_{p}" for p in "qkv"]
    assert model.blocks[0].attn.num_heads == 1 and model.blocks[0].attn.proj.weight.shape == [16, 32]
    stream = graph.group("embed")
    assert ("blocks.0.attn.conv_q.0", "weight", 0) in stream.members  # the depthwise projections follow it


def test_mobilevit_block_prunes_heads_mlp_and_its_convs_exactly(tmp_path):
    ratios = {"block.transformer.attn.qkv": 0.5, "block.transformer.mlp.fc1": 0.3, "stem.0": 0.25,
              "block.conv1.0": 0.25, "block.conv3.0": 0.25}
    model, graph, result = prune_and_check(MobileViT, SHAPE, ratio=ratios, tmp_path=tmp_path, round_to=1)
    assert model.block.transformer.attn.num_heads == 1
    assert graph.group("block.conv2").kind == "embed"  # the patches' width, unfolded and folded back


def test_mobilevit_patch_width_prunes_when_asked(tmp_path):
    model, graph, result = prune_and_check(MobileViT, SHAPE, ratio={"block.conv2": 0.25}, tmp_path=tmp_path,
                                           round_to=1, exact=False, prune_embed=True)
    assert model.block.conv2.weight.shape[0] == 24 and model.block.conv3[0].weight.shape[1] == 24


def test_segformer_prunes_heads_mix_ffn_and_decoder_exactly(tmp_path):
    model, graph, result = prune_and_check(SegFormer, [1, 3, 32, 32], ratio=0.3, out_dim=None, tmp_path=tmp_path,
                                           round_to=1)
    pruned = {name for name, _, _ in result.layers}
    assert {"stages.0.block.mlp.fc1", "stages.1.block.attn.q", "linear_c.0", "fuse.0"} <= pruned
    assert graph.group("stages.1.patch_embed").kind == "embed" and "stages.1.patch_embed" not in pruned
    assert result.flops_after < 0.85 * result.flops_before
