"""Checks every pruned structure must pass (shared by tests/test_prune_<structure>.py).

The central one, `check_exact`: the pruned model must compute what the unpruned model
computes once the removed channels are cut off where they are consumed (their slices of
each consumer's input axis set to zero). A wrong group, offset or coupling breaks it.
"""

import numpy as np
import paddle

import slimkit
from slimkit.core.surgery import capture, restore
from slimkit.pruning import analyze, prune
from slimkit.pruning.dependency import flat_outputs


def first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def run(model, x):
    """Every output tensor of `model(x)` (any nesting of lists, tuples and dicts), in order, as numpy."""
    model.eval()
    with paddle.no_grad():
        out = model(x)
    return [o.numpy() for o in flat_outputs(out)]


def prune_and_check(build, input_shape, ratio=0.3, out_dim=10, tmp_path=None, export=True, exact=True, round_to=None,
                    **options):
    """Prune `build()` uniformly by `ratio`; assert exactness, shapes, attributes, FLOPs, export, training.
    `round_to` None keeps the library default (channel alignment); 1 checks exact per-channel counts.
    `options` go to `prune` (prune_heads, prune_mlp, prune_embed).

    `out_dim=None`: a model whose outputs are not [batch, classes] logits (feature maps, several
    heads, dicts); its outputs must keep the unpruned model's shapes. `exact=False` for groups
    through a LayerNorm over channels: its statistics change with the channels, so the pruned
    model cannot equal the masked one.
    """
    paddle.seed(0)
    model = build()
    _randomize_bn(model)
    graph = analyze(model, input_shape)
    original = capture(model)
    x = paddle.to_tensor(np.random.RandomState(0).randn(*input_shape).astype("float32"))
    shapes_before = [o.shape for o in run(model, x)]

    result = prune(model, input_shape, ratios=ratio, graph=graph, round_to=round_to, **options)

    assert result.layers and result.flops_after < result.flops_before
    assert slimkit.count_flops(model, input_shape)[0] == result.flops_after
    outs = run(model, x)
    if out_dim is None:
        assert [o.shape for o in outs] == shapes_before
    else:
        assert all(o.shape == (input_shape[0], out_dim) for o in outs), [o.shape for o in outs]
    check_attributes(model)
    if exact:
        check_exact(build, original, graph, result.keep, x, outs)
    for name, before, after in result.layers:
        assert after < before and graph.group(name).channels == before
    if export:
        check_jit_roundtrip(model, input_shape, x, outs, tmp_path)
        check_checkpoint_roundtrip(model, build, x, outs, tmp_path)
    check_train_step(model, input_shape, classes=out_dim is not None)
    return model, graph, result


def _randomize_bn(model):
    # Fresh BN layers are identities (mean 0, var 1): random statistics make a wrong slice visible.
    rng = np.random.RandomState(1)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.layer.norm._BatchNormBase):
            n = layer.weight.shape[0]
            layer._mean.set_value(rng.randn(n).astype("float32") * 0.1)
            layer._variance.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.bias.set_value(rng.randn(n).astype("float32") * 0.1)


def check_exact(build, original, graph, keep, x, pruned_outs):
    for ref, got in zip(run(masked_reference(build, original, graph, keep), x), pruned_outs):
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def masked_reference(build, original, graph, keep):
    """The unpruned model (`original`, a capture) with the removed channels cut off where they are consumed."""
    reference = build()
    restore(reference, original)
    layers = dict(reference.named_sublayers(include_self=True))
    for group in graph.groups:
        if group.name not in keep:
            continue
        dropped = np.setdiff1d(np.arange(group.channels), keep[group.name])
        for s in group.slices:
            if s.role != "in":
                continue
            local = dropped[(dropped >= s.start) & (dropped < s.start + s.count)] - s.start
            positions = (s.offset + local[:, None] * s.repeat + np.arange(s.repeat)[None, :]).ravel()
            w = layers[s.layer]._parameters[s.tensor].numpy()
            index = [slice(None)] * w.ndim
            index[s.axis] = positions
            w[tuple(index)] = 0
            layers[s.layer]._parameters[s.tensor].set_value(w)
    return reference


def check_attributes(model):
    for name, layer in model.named_sublayers():
        if isinstance(layer, paddle.nn.layer.conv._ConvNd):
            w = layer.weight.shape
            transposed = isinstance(layer, (paddle.nn.Conv2DTranspose, paddle.nn.Conv1DTranspose))
            out_c, in_c = (w[1] * layer._groups, w[0]) if transposed else (w[0], w[1] * layer._groups)
            assert (layer._out_channels, layer._in_channels) == (out_c, in_c), name
            if layer.bias is not None:
                assert layer.bias.shape[0] == out_c, name
        elif isinstance(layer, paddle.nn.layer.norm._BatchNormBase):
            n = layer._num_features
            shapes = [layer.weight.shape[0], layer.bias.shape[0], layer._mean.shape[0], layer._variance.shape[0]]
            assert shapes == [n] * 4
        elif isinstance(layer, paddle.nn.Linear) and layer.bias is not None:
            assert layer.bias.shape[0] == layer.weight.shape[1], name


def check_jit_roundtrip(model, input_shape, x, outs, tmp_path):
    path = str(tmp_path / "jit" / "model")
    model.eval()
    paddle.jit.save(model, path, input_spec=[paddle.static.InputSpec(input_shape, "float32")])
    loaded = paddle.jit.load(path)
    for a, b in zip(run(loaded, x), outs):
        np.testing.assert_allclose(a, b, atol=1e-4)


def check_checkpoint_roundtrip(model, build, x, outs, tmp_path):
    folder = tmp_path / "ckpt"
    slimkit.save_model(model, folder)
    fresh = slimkit.load_model(folder, build())
    for a, b in zip(run(fresh, x), outs):
        np.testing.assert_allclose(a, b, atol=1e-4)


def check_train_step(model, input_shape, classes=True):
    """One SGD step changes the weights: cross-entropy on the first output, or (classes=False) the
    mean square of every output."""
    model.train()
    shape = [max(2, input_shape[0])] + list(input_shape[1:])
    x = paddle.randn(shape)
    labels = paddle.to_tensor(np.arange(shape[0]) % 10, dtype="int64")
    before = [p.numpy().copy() for p in model.parameters() if not p.stop_gradient][:3]
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    if classes:
        loss = paddle.nn.functional.cross_entropy(first(model(x)), labels)
    else:
        loss = paddle.add_n([(o * o).mean() for o in flat_outputs(model(x))])
    loss.backward()
    opt.step()
    opt.clear_grad()
    after = [p.numpy() for p in model.parameters() if not p.stop_gradient][:3]
    assert np.isfinite(float(loss)) and any(not np.allclose(a, b) for a, b in zip(before, after))
    model.eval()
