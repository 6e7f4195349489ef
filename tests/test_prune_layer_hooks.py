"""Removal hooks per layer type: a user's layer that reads its own size attributes prunes once its hook is
registered; without it the groups it would break stay whole, and a failing hook leaves the model unchanged."""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
from attention_models import Block, SVTRAttention, SVTRRecognizer, svtr_attention_hook
from prune_checks import prune_and_check

from slimkit import ModelError
from slimkit.core.surgery import model_digest
from slimkit.pruning import analyze, layer_hooks, prune


class TalkingAttention(nn.Layer):
    """A user's attention that keeps its head count as `h` (slimkit's default hook does not know the name)."""

    def __init__(self, dim=32, h=4):
        super().__init__()
        self.h, self.d = h, dim // h
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape([b, n, 3, self.h, self.d]).transpose([2, 0, 3, 1, 4]).unbind(0)
        y = F.softmax(q @ k.transpose([0, 1, 3, 2]), axis=-1) @ v
        return self.out(y.transpose([0, 2, 1, 3]).reshape([b, n, self.h * self.d]))


class Net(nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2D(3, 32, 4, stride=4)
        self.attn = TalkingAttention()
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose([0, 2, 1])
        return self.head((t + self.attn(t)).mean(axis=1))


def fix_heads(layer, change):
    (_, after), = change.heads
    layer.h = after


@pytest.fixture
def hooks():
    added = []

    def register(layer_type, hook):
        added.append(layer_type)
        return layer_hooks.register_layer_hook(layer_type, hook)

    yield register
    for layer_type in added:
        layer_hooks.unregister_layer_hook(layer_type)


SHAPE = [1, 3, 16, 16]


def test_without_a_hook_the_heads_of_a_layer_slimkit_cannot_update_stay_whole():
    graph = analyze(Net(), SHAPE)
    assert graph.group("attn.qkv").kind == "heads" and not graph.group("attn.qkv").prunable
    assert "written in the model's forward, which fails once they change" in graph.skipped()["attn.qkv"]


def test_a_registered_hook_makes_the_heads_prune_and_the_export_agree(hooks, tmp_path):
    hooks(TalkingAttention, fix_heads)
    model, graph, result = prune_and_check(Net, SHAPE, ratio={"attn.qkv": 0.5}, tmp_path=tmp_path, round_to=1)
    assert model.attn.h == 2 and model.attn.qkv.weight.shape == [32, 3 * 2 * 8]


def test_the_svtr_mixer_of_pp_ocr_prunes_heads_with_its_hook(hooks, tmp_path):
    assert not analyze(SVTRRecognizer(), [1, 3, 32, 64]).group("neck.blocks.0.attn.qkv").prunable
    hooks(SVTRAttention, svtr_attention_hook)
    model, graph, result = prune_and_check(SVTRRecognizer, [1, 3, 32, 64], ratio=0.5, tmp_path=tmp_path, round_to=1)
    attn = model.neck.blocks[0].attn
    assert (attn.num_heads, attn.dim) == (2, 16) and isinstance(model.neck.blocks[0], Block)
    assert result.flops_after < 0.85 * result.flops_before


def test_a_failing_hook_leaves_the_model_exactly_as_it_was(hooks):
    def broken(layer, change):
        layer.h = 99  # changed before failing: must come back too
        raise RuntimeError("hook bug")

    model = Net()
    hooks(TalkingAttention, fix_heads)  # analyzed with a working hook: the heads are prunable
    graph = analyze(model, SHAPE)
    digest = model_digest(model)
    hooks(TalkingAttention, broken)
    with pytest.raises(ModelError, match="restored unchanged: RuntimeError: hook bug"):
        prune(model, SHAPE, ratios={"attn.qkv": 0.5}, graph=graph, round_to=1)
    assert model_digest(model) == digest and model.attn.h == 4


def test_the_registry_finds_the_most_specific_hook_and_checks_what_it_gets(hooks):
    assert layer_hooks.hook_for(nn.Conv2D(3, 4, 1)) is layer_hooks.conv_hook
    assert layer_hooks.hook_for(nn.MultiHeadAttention(8, 2)) is layer_hooks.multi_head_attention_hook
    assert layer_hooks.hook_for(TalkingAttention()) is layer_hooks.default_hook
    hooks(TalkingAttention, fix_heads)
    assert layer_hooks.hook_for(TalkingAttention()) is fix_heads
    with pytest.raises(ModelError, match="already has a removal hook"):
        layer_hooks.register_layer_hook(TalkingAttention, fix_heads, replace=False)
    with pytest.raises(ModelError, match="paddle.nn.Layer subclass"):
        layer_hooks.register_layer_hook(int, fix_heads)
    with pytest.raises(ModelError, match="callable"):
        layer_hooks.register_layer_hook(TalkingAttention, "fix")
    layer_hooks.unregister_layer_hook(paddle.nn.Layer)  # the default stays
    assert layer_hooks.hook_for(nn.Linear(2, 2)) is layer_hooks.default_hook
