"""Attention heads prune whole: a head's q, k and v and the projection's inputs go together, head_dim is kept,
and the layer's head count follows (its removal hook), so the forward and `jit.save` agree."""

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from attention_models import Block, MHABlock, Mlp, ViT
from prune_checks import prune_and_check

from slimkit.pruning import analyze, group_data, prune, score_groups
from slimkit.pruning.criteria import L1Norm

SHAPE = [1, 3, 16, 16]


def test_vit_heads_prune_exactly_and_the_head_count_follows(tmp_path):
    ratios = {"blocks.0.attn.qkv": 0.5, "blocks.1.attn.qkv": 0.25}
    model, graph, result = prune_and_check(ViT, SHAPE, ratio=ratios, tmp_path=tmp_path, round_to=1)
    heads = graph.group("blocks.0.attn.qkv")
    assert (heads.kind, heads.channels, heads.roots) == ("heads", 4, ["blocks.0.attn.qkv"])
    assert ("blocks.0.attn", None, None) in heads.members  # the layer whose head count changes
    attn = model.blocks[0].attn
    assert (attn.num_heads, attn.head_dim, model.blocks[1].attn.num_heads) == (2, 8, 3)
    assert attn.qkv.weight.shape == [32, 3 * 2 * 8] and attn.proj.weight.shape == [2 * 8, 32]


def test_the_kept_heads_are_the_same_in_q_k_and_v():
    model = ViT()
    before = model.blocks[0].attn.qkv.weight.numpy().reshape(32, 3, 4, 8)
    result = prune(model, SHAPE, ratios={"blocks.0.attn.qkv": 0.5}, round_to=1)
    kept = result.keep["blocks.0.attn.qkv"]
    after = model.blocks[0].attn.qkv.weight.numpy().reshape(32, 3, 2, 8)
    np.testing.assert_array_equal(after, before[:, :, kept, :])


def test_deit_distillation_token_and_unbind_prune_heads_and_mlp_by_default(tmp_path):
    build = lambda: ViT(distilled=True, unbind=True)  # noqa: E731
    model, graph, result = prune_and_check(build, SHAPE, ratio=0.5, tmp_path=tmp_path, round_to=1)
    pruned = {name for name, _, _ in result.layers}
    assert pruned == {"blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.0.mlp.fc1", "blocks.1.mlp.fc1"}
    assert "prune_embed is false" in result.skipped["patch_embed"]
    assert model.blocks[1].mlp.fc1.weight.shape == [32, 64] and model.blocks[1].attn.num_heads == 2


def test_paddle_multi_head_attention_prunes_heads(tmp_path):
    model, graph, result = prune_and_check(MHABlock, SHAPE, ratio={"attn.q_proj": 0.5}, tmp_path=tmp_path, round_to=1)
    assert graph.group("attn.q_proj").roots == ["attn.q_proj", "attn.k_proj", "attn.v_proj"]
    attn = model.attn
    assert (attn.num_heads, attn.head_dim, attn.embed_dim) == (2, 8, 32)
    assert attn.q_proj.weight.shape == [32, 16] and attn.out_proj.weight.shape == [16, 32]


def test_heads_of_a_forward_that_computes_head_dim_from_the_width_stay_whole_and_say_why(tmp_path):
    # PaddleClas writes `C // self.num_heads` with C read from the input: one head less breaks the reshape.
    graph = analyze(ViT(c_from_x=True), SHAPE)
    reason = graph.skipped()["blocks.0.attn.qkv"]
    assert "fixed shape [1, 17, 3, 4, 8] written in the model's forward, which fails once they change" in reason
    assert "the head sizes of the attention after `blocks.0.attn.qkv`" in graph.skipped()["patch_embed"]
    model, _, result = prune_and_check(lambda: ViT(c_from_x=True), SHAPE, ratio=0.3, tmp_path=tmp_path, round_to=1)
    assert {name for name, _, _ in result.layers} == {"blocks.0.mlp.fc1", "blocks.1.mlp.fc1"}


def test_a_criterion_scores_a_head_as_one_unit():
    model = ViT()
    group = analyze(model, SHAPE).group("blocks.0.attn.qkv")
    weights = group_data(model, group).weights
    w = model.blocks[0].attn.qkv.weight.numpy().reshape(32, 3, 4, 8)  # [in, q/k/v, head, head_dim]
    assert len(weights) == 1 and weights[0].shape == (4, 3 * 8 * 32)
    per_head = np.abs(w).sum(axis=(0, 1, 3))
    np.testing.assert_allclose(L1Norm().group_scores(group_data(model, group)), per_head, rtol=1e-5)


def test_taylor_scores_heads_from_the_qkv_outputs():
    model = ViT()
    graph = analyze(model, SHAPE)
    batches = [(paddle.randn([4, 3, 16, 16]), paddle.to_tensor(np.arange(4) % 10, dtype="int64"))]
    scores = score_groups(model, [graph.group("blocks.0.attn.qkv"), graph.group("blocks.0.mlp.fc1")], "taylor",
                          batches=batches)
    assert scores["blocks.0.attn.qkv"].shape == (4,) and scores["blocks.0.mlp.fc1"].shape == (128,)
    assert np.isfinite(scores["blocks.0.attn.qkv"]).all() and scores["blocks.0.attn.qkv"].max() > 0


class ChannelAttention(nn.Layer):
    """XCiT's cross-covariance attention: q^T k over the tokens, an attention between head_dim channels."""

    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape([b, n, 3, self.num_heads, self.head_dim]).transpose([2, 0, 3, 4, 1]).unbind(0)
        attn = F.softmax(q @ k.transpose([0, 1, 3, 2]), axis=-1)  # [b, heads, head_dim, head_dim]
        return self.proj((attn @ v).transpose([0, 3, 1, 2]).reshape([b, n, c]))


class XCiT(nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2D(3, 32, 4, stride=4)
        self.block = Block(32, 4, ChannelAttention(32, 4))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.block(self.embed(x).flatten(2).transpose([0, 2, 1])).mean(axis=1))


def test_an_attention_it_cannot_follow_keeps_exactly_its_groups_whole_and_the_rest_prunes(tmp_path):
    graph = analyze(XCiT(), SHAPE)
    assert "attention over channels" in graph.skipped()["block.attn.qkv"]
    assert isinstance(XCiT().block.mlp, Mlp) and graph.group("block.mlp.fc1").prunable
    model, graph, result = prune_and_check(XCiT, SHAPE, ratio=0.5, tmp_path=tmp_path, round_to=1)
    assert {name for name, _, _ in result.layers} == {"block.mlp.fc1"}


def test_trial_removals_put_the_head_count_back():
    # FLOPs probes and sensitivity trials prune, measure and restore: the head count must come back too.
    from slimkit.core.surgery import model_digest
    from slimkit.pruning import FlopsProbe

    model = ViT()
    graph = analyze(model, SHAPE)
    digest = model_digest(model)
    probe = FlopsProbe(model, graph, SHAPE)
    assert probe.cost({"blocks.0.attn.qkv": 2}) < probe.base
    assert model.blocks[0].attn.num_heads == 4 and model_digest(model) == digest
    assert model(paddle.randn(SHAPE)).shape == [1, 10]
