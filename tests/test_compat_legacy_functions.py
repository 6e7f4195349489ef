"""slimkit.compat's legacy-IR functions: models calling paddle.matmul, F.gelu, nn.Tanh, ... export under
the legacy IR and run in Paddle Inference like the eager model; the workaround is still needed."""

import numpy as np
import paddle
import pytest

from slimkit import compat
from slimkit.deploy import InferenceModel, export_float
from compat_functions_model import PirOnlyFunctions

SPEC = [paddle.static.InputSpec([None, 4, 8], "float32", "x")]


def test_the_workaround_is_needed(tmp_path):
    # If this starts to pass, Paddle's own functions append legacy ops again: drop LEGACY_FUNCTIONS.
    model = PirOnlyFunctions()
    with compat.session_guard(), paddle.pir_utils.OldIrGuard():
        with pytest.raises(TypeError, match="must be Value, but got Variable"):
            paddle.jit.save(model, str(tmp_path / "model"), input_spec=SPEC)
    assert compat.pir_enabled() and paddle.in_dynamic_mode()


@pytest.mark.parametrize("runtime", ["cpu", "onednn_int8"])
def test_the_export_computes_what_the_eager_model_does(tmp_path, runtime):
    paddle.seed(0)
    model = PirOnlyFunctions()
    model.eval()
    prefix = export_float(model, tmp_path / runtime, [1, 4, 8])
    x = np.random.RandomState(0).randn(3, 4, 8).astype("float32")
    np.testing.assert_allclose(InferenceModel(prefix, runtime).run(x), model(paddle.to_tensor(x)).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_paddle_is_restored_after_the_export(tmp_path):
    from paddle import _C_ops
    from paddle.base.framework import Variable

    before = {name: getattr(_C_ops, name) for name in compat.LEGACY_FUNCTIONS}
    method = Variable.matmul
    export_float(PirOnlyFunctions(), tmp_path, [1, 4, 8])
    assert all(getattr(_C_ops, name) is function for name, function in before.items())
    assert Variable.matmul is method
    y = paddle.matmul(paddle.ones([2, 3]), paddle.ones([3, 2]))  # eager calls are paddle's own again
    assert y.numpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]
