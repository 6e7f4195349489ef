"""A pruned model is an ordinary smaller model: it exports, reloads, prunes again; analysis changes nothing."""

import numpy as np
import paddle

import slimkit
from slimkit.core.surgery import capture, restore
from slimkit.pruning import analyze, prune, remove_channels

SHAPE = [2, 3, 32, 32]
SPEC = {"name": "resnet20", "num_classes": 10}


def run(model, x):
    model.eval()
    with paddle.no_grad():
        return model(x).numpy()


def test_analyze_leaves_the_model_as_it_was():
    model = slimkit.build_model(**SPEC)
    model.train()
    model.layer2.eval()  # a mixed train/eval state must survive too
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    analyze(model, SHAPE)
    assert getattr(model.forward, "__func__", None) is type(model).forward
    assert model.training and not model.layer2.training and not model.layer2[0].conv1.training
    assert model.layer1[0].conv1.training
    assert all(np.array_equal(v.numpy(), state[k]) for k, v in model.state_dict().items())
    assert paddle.in_dynamic_mode() and slimkit.compat.pir_enabled()


def test_pruned_model_exports_and_reloads(tmp_path):
    paddle.seed(0)
    model = slimkit.build_model(**SPEC)
    result = prune(model, SHAPE, ratios=0.5)
    x = paddle.randn(SHAPE)
    expected = run(model, x)

    paddle.jit.save(model, str(tmp_path / "jit" / "model"), input_spec=[paddle.static.InputSpec([None, 3, 32, 32])])
    np.testing.assert_allclose(run(paddle.jit.load(str(tmp_path / "jit" / "model")), x), expected, atol=1e-4)

    slimkit.save_model(model, tmp_path / "ckpt", spec=SPEC)
    rebuilt = slimkit.load_model(tmp_path / "ckpt")  # built from the spec, reshaped to the pruned shapes
    np.testing.assert_allclose(run(rebuilt, x), expected, atol=1e-4)
    assert rebuilt.layer3[0].conv1.weight.shape[0] == 32
    assert slimkit.count_flops(rebuilt, SHAPE)[0] == result.flops_after


def test_pruning_twice_with_the_returned_graph():
    model = slimkit.build_model(**SPEC)
    first = prune(model, SHAPE, ratios=0.5)
    second = prune(model, SHAPE, ratios=0.5, graph=first.graph)
    assert second.flops_before == first.flops_after and second.flops_after < first.flops_after
    assert model.layer3[0].conv1.weight.shape[0] == 16  # 64 -> 32 -> 16
    assert run(model, paddle.randn(SHAPE)).shape == (2, 10)


def test_one_analysis_serves_many_trial_removals():
    # What a sensitivity scan does: prune one group, measure, restore, next group, same graph.
    model = slimkit.build_model(**SPEC)
    graph = analyze(model, SHAPE)
    original = capture(model)
    x = paddle.randn(SHAPE)
    expected = run(model, x)
    for group in graph.prunable()[:4]:
        pruned = remove_channels(model, graph, {group.name: np.arange(group.channels // 2)})
        assert pruned.group(group.name).channels == group.channels // 2
        assert graph.group(group.name).channels == group.channels  # the graph passed in is unchanged
        restore(model, original)
        np.testing.assert_array_equal(run(model, x), expected)
