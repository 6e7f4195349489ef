"""The quantization workarounds in slimkit.compat: each still works and is still needed."""

import paddle
import pytest

from slimkit import compat
from slimkit.models.zoo import small_cnn
from slimkit.quant import calibrate, convert, prepare_ptq


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


def _quanted_conv(factory):
    conv = paddle.nn.Conv2D(2, 3, 3)
    return conv, factory._instance(conv)


def test_paddleslims_channel_wise_quanter_all_reduces_in_every_forward(monkeypatch):
    # Needed: with paddle.distributed initialized, PaddleSlim's quanter joins an all-reduce in every forward.
    compat.import_paddleslim()
    from paddleslim.quant.quanters import FakeQuanterChannelWiseAbsMaxObserver

    calls = []
    monkeypatch.setattr(paddle.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(paddle.distributed, "all_reduce", lambda tensor, op=None: calls.append(op))
    conv, quanter = _quanted_conv(FakeQuanterChannelWiseAbsMaxObserver(bit_length=8))
    quanter(conv.weight)
    assert len(calls) == 1


def test_the_rank_local_quanter_gives_paddleslims_output_without_the_all_reduce(monkeypatch):
    compat.import_paddleslim()
    from paddleslim.quant.quanters import FakeQuanterChannelWiseAbsMaxObserver

    paddle.seed(0)
    conv, slims = _quanted_conv(FakeQuanterChannelWiseAbsMaxObserver(bit_length=8))
    ours = compat.channel_wise_weight_quanter(8)._instance(conv)
    assert isinstance(ours, type(slims))
    expected = slims(conv.weight).numpy()
    monkeypatch.setattr(paddle.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(paddle.distributed, "all_reduce", lambda *a, **k: pytest.fail("all-reduce in forward"))
    got = ours(conv.weight).numpy()
    assert (got == expected).all() and (ours.scales().numpy() == slims.scales().numpy()).all()
    assert len(set(got.ravel().tolist())) > 2  # a real fake-quantized tensor, not a constant
