"""Each compat workaround: still needed (the upstream problem is still there) and working."""

import numpy as np
import paddle
import pytest

import slimkit
from slimkit import compat


def test_np_product_alias_is_needed_and_works():
    compat.import_paddleslim_pruners()
    # setup.py pins numpy 1.x (for a silent `import paddle`), which still has np.product; the
    # alias serves environments that keep numpy 2 (where np.product is gone).
    if int(np.__version__.split(".")[0]) < 2:
        assert not compat.FOUND["np_product_missing"] and np.product is not np.prod
    else:
        assert compat.FOUND["np_product_missing"], "numpy 2 has np.product again: drop the alias"
        assert np.product is np.prod
    from paddleslim.dygraph.prune.fpgm_pruner import FPGMFilterPruner  # noqa: F401  (calls np.product)


def test_static_mode_guard_alias_is_needed_and_works():
    compat.import_paddleslim_pruners()
    assert compat.FOUND["old_guard_missing"], "paddle has _to_static_mode_guard_ again: drop the alias"
    base = paddle.base.dygraph.base
    assert base._to_static_mode_guard_ is base.to_static_mode_guard


def _l1_pruner(model, shape):
    ps = compat.import_paddleslim_pruners()
    return ps.dygraph.L1NormFilterPruner(model, shape)


def test_paddleslim_trace_runs_under_scoped_legacy_ir_and_restores_session():
    model = slimkit.build_model("resnet20", num_classes=10, in_channels=3)
    pruner = _l1_pruner(model, [1, 3, 32, 32])
    conv = model.conv1.weight.name
    pruner.prune_vars({conv: 0.25}, axis=0)
    assert model.conv1.weight.shape[0] == 12
    assert model(paddle.randn([2, 3, 32, 32])).shape == [2, 10]
    assert paddle.in_dynamic_mode() and compat.pir_enabled()


def test_paddleslim_trace_fails_without_the_guard():
    """Proves the legacy-IR wrapper is still needed: the unwrapped trace breaks under PIR."""
    compat.import_paddleslim_pruners()
    from paddleslim.core import dygraph as slim_dygraph

    raw = slim_dygraph._dy2prog.__wrapped__
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    with compat.session_guard():
        program = raw(model, [1, 1, 8, 8])
        with pytest.raises(AttributeError, match="input_arg_names"):
            [op.input_arg_names for op in program.global_block().ops]


def test_session_restored_after_a_failing_trace():
    class Broken(paddle.nn.Layer):
        def forward(self, x):
            raise RuntimeError("forward fails")

    with pytest.raises(RuntimeError, match="forward fails"):
        _l1_pruner(Broken(), [1, 3, 8, 8])
    assert paddle.in_dynamic_mode() and compat.pir_enabled()


def test_legacy_ir_scope_restores_after_error():
    with pytest.raises(ValueError):
        with compat.legacy_ir():
            assert not compat.pir_enabled()
            raise ValueError("inside")
    assert paddle.in_dynamic_mode() and compat.pir_enabled()


def test_unstructured_masks_stay_float():
    compat.import_paddleslim_pruners()
    from paddleslim.dygraph.prune.unstructured_pruner import UnstructuredPruner

    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    pruner = UnstructuredPruner(model, mode="ratio", ratio=0.5)
    pruner.step()
    assert all(m.dtype == paddle.float32 for m in pruner.masks.values())
    buffers = [b for n, b in model.named_buffers() if n.endswith("_mask")]
    assert buffers and all(b.dtype == paddle.float32 for b in buffers)
    out = model(paddle.randn([2, 1, 8, 8]))  # the pre-forward hook multiplies by the mask
    assert out.shape == [2, 10]
    assert 0.45 < UnstructuredPruner.total_sparse(model) < 0.55


def test_unstructured_masks_turn_bool_without_the_fix():
    """Proves the mask cast is still needed: paddle.assign of a bool array into a float mask."""
    mask = paddle.ones([4], dtype="float32")
    paddle.assign(np.array([True, False, True, True]), output=mask)
    assert mask.dtype == paddle.bool


def test_importing_paddleslim_keeps_the_matplotlib_backend():
    """paddleslim switches matplotlib to Agg at import; a notebook's inline plots must survive it."""
    import os
    import subprocess
    import sys

    code = ("import matplotlib, slimkit; from slimkit import compat; compat.import_paddleslim(); "
            "print(compat.FOUND['matplotlib_use_called'] == ['Agg'], matplotlib.get_backend())")
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    changed, backend = out.stdout.split()[-2:]
    assert changed == "True", "paddleslim no longer calls matplotlib.use('Agg') at import: drop the guard"
    assert backend.lower() == "svg"


def test_pixel_label_smoothing_is_needed_and_matches_paddles_smoothing_per_pixel():
    rng = np.random.RandomState(0)
    scores = paddle.to_tensor(rng.randn(2, 3, 4, 5).astype("float32"))
    labels = paddle.to_tensor(rng.randint(0, 3, (2, 4, 5)))
    with pytest.raises(RuntimeError, match="label_smooth"):  # drop the hand-written smoothing when this passes
        paddle.nn.functional.cross_entropy(paddle.transpose(scores, [0, 2, 3, 1]), labels.unsqueeze(-1),
                                           label_smoothing=0.1)
    # the same pixels as a batch of 40 per-image samples, which paddle smooths itself
    flat = paddle.transpose(scores, [0, 2, 3, 1]).reshape([-1, 3])
    for smoothing in (0.0, 0.1):
        expected = paddle.nn.functional.cross_entropy(flat, labels.reshape([-1]), label_smoothing=smoothing)
        got = compat.pixel_cross_entropy(scores, labels, label_smoothing=smoothing)
        assert float(got) == pytest.approx(float(expected), rel=1e-5)
    ignored = labels.numpy().copy()
    ignored[0] = 255
    kept = paddle.nn.functional.cross_entropy(paddle.transpose(scores[1:], [0, 2, 3, 1]).reshape([-1, 3]),
                                              labels[1:].reshape([-1]), label_smoothing=0.1)
    assert float(compat.pixel_cross_entropy(scores, paddle.to_tensor(ignored), 255, 0.1)) == \
        pytest.approx(float(kept), rel=1e-5)
