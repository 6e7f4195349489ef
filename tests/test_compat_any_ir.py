"""slimkit.compat.any_ir and compat.interpolate: the rebuilt forwards' workarounds, needed and working."""

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import paddle
import pytest

from slimkit import compat
from slimkit.compat import any_ir


def _static(build, feeds, legacy):
    """Run `build(*data vars)` as a static program under the legacy IR or PIR; its output (numpy)."""
    guard = paddle.pir_utils.OldIrGuard if legacy else paddle.pir_utils.IrGuard
    with compat.session_guard(), guard():
        paddle.enable_static()
        main, start = paddle.static.Program(), paddle.static.Program()
        with paddle.static.program_guard(main, start):
            names = [f"in{i}" for i in range(len(feeds))]
            out = build(*[paddle.static.data(n, list(f.shape), "float32") for n, f in zip(names, feeds)])
        return paddle.static.Executor().run(main, feed=dict(zip(names, feeds)), fetch_list=[out])[0]


def test_the_paddle_functions_it_replaces_still_fail_under_the_legacy_ir():
    x = np.ones([2, 2], "float32")
    for fn in (lambda a: paddle.matmul(a, a), paddle.exp, paddle.nn.functional.sigmoid, paddle.sum):
        with pytest.raises(TypeError, match="must be Value, but got Variable"):
            _static(fn, [x], legacy=True)


CASES = {
    **{name: (lambda a, b, name=name: getattr(any_ir, name)(a)) for name in any_ir.UNARY},
    "matmul": lambda a, b: any_ir.matmul(a, b),
    "matmul_transposed": lambda a, b: any_ir.matmul(b, a, transpose_x=True, transpose_y=True),
    "maximum": lambda a, b: any_ir.maximum(a, paddle.transpose(b, [0, 2, 1])),
    "minimum": lambda a, b: any_ir.minimum(a, paddle.transpose(b, [0, 2, 1])),
    "greater_than": lambda a, b: paddle.cast(any_ir.greater_than(a, paddle.transpose(b, [0, 2, 1])), "float32"),
    "logical": lambda a, b: paddle.cast(any_ir.logical_or(any_ir.logical_and(a > 0.5, b.transpose([0, 2, 1]) > 0.5),
                                                          any_ir.logical_not(a > 0.9)), "float32"),
    "gelu": lambda a, b: any_ir.gelu(a, approximate=True),
    "softplus": lambda a, b: any_ir.softplus(a, beta=2.0, threshold=10.0),
    "sum": lambda a, b: any_ir.sum(a, axis=[1], keepdim=True),
    "sum_all": lambda a, b: any_ir.sum(a),
    "amax": lambda a, b: any_ir.amax(a, axis=2),
    "amin": lambda a, b: any_ir.amin(a, axis=[1, 2], keepdim=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_any_ir_functions_agree_eagerly_in_pir_and_under_the_legacy_ir(name):
    x = np.random.RandomState(0).rand(2, 3, 4).astype("float32") + 0.1
    y = np.random.RandomState(1).rand(2, 4, 3).astype("float32") + 0.1
    eager = CASES[name](paddle.to_tensor(x), paddle.to_tensor(y)).numpy()
    for legacy in (False, True):
        np.testing.assert_allclose(_static(CASES[name], [x, y], legacy), eager, rtol=1e-6, atol=1e-6)


class _Upsample(paddle.nn.Layer):
    def __init__(self, by_size):
        super().__init__()
        self.by_size = by_size
        self.conv = paddle.nn.Conv2D(3, 4, 1)

    def forward(self, x):
        resize = compat.interpolate if self.by_size else paddle.nn.functional.interpolate
        return resize(self.conv(x), scale_factor=[2.0, 3.0], mode="nearest")


def test_interpolate_by_whole_factors_picks_the_same_pixels_as_by_scale():
    x = paddle.rand([2, 3, 5, 7])
    by_size, by_scale = _Upsample(True), _Upsample(False)
    by_scale.set_state_dict(by_size.state_dict())
    np.testing.assert_array_equal(by_size(x).numpy(), by_scale(x).numpy())
    bilinear = compat.interpolate(x, scale_factor=[2.0, 2.0], mode="bilinear")  # left to paddle as asked
    np.testing.assert_array_equal(bilinear.numpy(),
                                  paddle.nn.functional.interpolate(x, scale_factor=[2.0, 2.0], mode="bilinear"))


@pytest.mark.skipif(importlib.util.find_spec("paddle2onnx") is None, reason="needs paddle2onnx (.[onnx])")
def test_paddle2onnx_converts_the_resize_by_size_and_still_fails_on_the_resize_by_scale():
    # With a dynamic height and width the export's rewrite of scales into sizes
    # (compat.onnx_ready_program) cannot apply: only the resize written by size converts.
    from slimkit.core.errors import ModelError
    from slimkit.deploy import onnx

    with tempfile.TemporaryDirectory() as tmp:
        for by_size in (True, False):
            folder = Path(tmp) / str(by_size)
            model = _Upsample(by_size)
            with compat.legacy_ir():
                paddle.jit.save(model, str(folder / "model"),
                                input_spec=[paddle.static.InputSpec([1, 3, None, None], "float32")])
            if by_size:
                assert onnx.convert(folder / "model", folder / "model.onnx") == 13
            else:
                with pytest.raises(ModelError, match="MUST be ir::FloatAttribute"):
                    onnx.convert(folder / "model", folder / "model.onnx")
