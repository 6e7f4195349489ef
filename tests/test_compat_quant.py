"""The quantization workarounds in slimkit.compat: each still works and is still needed."""

import paddle
import pytest

from slimkit import compat
from slimkit.quant import calibrate, convert, prepare_ptq
from slimkit.models import small_cnn


def test_linear_quanter_zero_point_fix_is_needed():
    from paddle.nn.quant.format import LinearQuanter

    compat.fix_linear_quanter_zero_point()
    original = LinearQuanter.__init__._slimkit_original
    layer = LinearQuanter.__new__(LinearQuanter)
    with pytest.raises(TypeError, match="NoneType"):
        original(layer, paddle.to_tensor([0.5]), None)


def test_linear_quanter_zero_point_fix_works():
    from paddle.nn.quant.format import LinearDequanter, LinearQuanter

    compat.fix_linear_quanter_zero_point()
    compat.fix_linear_quanter_zero_point()  # idempotent: wraps once
    assert not getattr(LinearQuanter.__init__._slimkit_original, "_slimkit_guarded", False)
    for cls in (LinearQuanter, LinearDequanter):
        layer = cls(paddle.to_tensor([0.5, 0.25, 1.0]), None, quant_axis=0)
        assert layer._zero_point.shape == [3]
        assert float(layer._zero_point.abs().sum()) == 0.0


def _converted_cnn():
    paddle.seed(0)
    observed = prepare_ptq(small_cnn(10, 1, 8))
    calibrate(observed, [(paddle.randn([4, 1, 8, 8]), None)])
    return convert(observed)


def test_quantized_export_needs_the_legacy_ir(tmp_path):
    # PIR's jit.save of quantize/dequantize layers rejects the dynamic batch (-1); if this
    # starts to pass, export.py can save under PIR and drop the legacy_ir() it uses.
    converted = _converted_cnn()
    spec = [paddle.static.InputSpec([None, 1, 8, 8], "float32", "x")]
    with compat.session_guard(), pytest.raises(ValueError, match="no less than 0"):
        paddle.jit.save(converted, str(tmp_path / "pir" / "model"), input_spec=spec)
    with compat.legacy_ir():
        paddle.jit.save(converted, str(tmp_path / "legacy" / "model"), input_spec=spec)
    assert (tmp_path / "legacy" / "model.pdmodel").is_file()
    assert compat.pir_enabled() and paddle.in_dynamic_mode()
