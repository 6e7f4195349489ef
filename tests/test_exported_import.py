"""slimkit.from_inference: exported programs the tests save themselves, rebuilt as paddle.nn.Layers."""

import collections
import copy
import inspect
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from exported_programs import EveryKind, TwoHeads, Unsupported, batch, max_difference, predictor_outputs, save

import slimkit
from slimkit import compat
from slimkit.core.errors import ConfigError, ModelError
from slimkit.exported import Affine, program_input_shape, register_translator, unregister_translator


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """EveryKind with trained-looking batch-norm statistics, saved as .json and as a legacy .pdmodel."""
    paddle.seed(0)
    model = EveryKind()
    with paddle.no_grad():
        model.train()
        model(paddle.rand([4, 3, 16, 16]))
    folder = tmp_path_factory.mktemp("every")
    save(model, folder / "pir" / "inference", [None, 3, 16, 16])
    save(model, folder / "legacy" / "inference", [None, 3, 16, 16], legacy=True)
    return folder


def _kinds(model):
    return collections.Counter(type(layer).__name__ for layer in model.sublayers())


@pytest.mark.parametrize("form", ["pir", "legacy"])
def test_every_parameterised_op_becomes_its_layer_and_the_outputs_match_paddle_inference(every_kind, form):
    model = slimkit.from_inference(every_kind / form)
    assert (every_kind / form / "inference.json").is_file() == (form == "pir")
    # conv (with its split-off bias), depthwise, grouped, transposed conv, BN 2-D/1-D, LN, Linear with and
    # without bias, and the folded BN (per-channel multiply + add) plus a one-value gain: Affine layers
    assert _kinds(model) == {"Conv2D": 4, "Conv2DTranspose": 1, "BatchNorm2D": 1, "BatchNorm1D": 1,
                             "LayerNorm": 1, "Linear": 2, "Affine": 2}
    convs = [layer for layer in model.sublayers() if type(layer).__name__ == "Conv2D"]
    assert sorted(c._groups for c in convs) == [1, 1, 2, 8]
    assert sum(c.bias is not None for c in convs) == 2  # the first conv and the 1x1 head kept their bias
    assert max_difference(model, batch([2, 3, 16, 16])) <= 1e-4
    assert not model.training and isinstance(model, paddle.nn.Layer)


def test_a_folded_batch_norm_is_a_per_channel_layer_the_channel_tracer_prunes(every_kind):
    model = slimkit.from_inference(every_kind / "pir")
    folded = next(l for l in model.sublayers() if isinstance(l, Affine) and l.weight.shape == [8])
    assert folded.bias.shape == [8] and folded.view == [1, -1, 1, 1]
    graph = slimkit.pruning.analyze(model, [1, 3, 16, 16])
    grouped = next(name for name, layer in model.named_sublayers() if getattr(layer, "_groups", 1) == 2)
    group = graph.group(grouped)
    folded_name = next(name for name, layer in model.named_sublayers() if layer is folded)
    assert {(s.layer, s.tensor) for s in group.slices} >= {(folded_name, "weight"), (folded_name, "bias")}
    slimkit.prune(model, [1, 3, 16, 16], ratios={grouped: 0.5})
    assert folded.weight.shape == [4] and folded.bias.shape == [4]
    with paddle.no_grad():
        assert model(paddle.rand([2, 3, 16, 16])).shape == [2, 4]


def test_a_program_with_two_outputs_returns_both_in_order_and_keeps_dynamic_sizes(tmp_path):
    paddle.seed(0)
    save(TwoHeads(), tmp_path / "inference", [None, 3, None, None])
    model = slimkit.from_inference(tmp_path)
    outputs = model.program_signature["outputs"]
    assert [o["shape"] for o in outputs] == [[-1, 3], [-1, 2, -1, -1]]
    assert model.program_signature["inputs"] == [{"name": "x", "shape": [-1, 3, -1, -1], "dtype": "float32"}]
    for shape in ([1, 3, 12, 20], [3, 3, 8, 8]):  # the batch and the image size are free, as in the program
        assert max_difference(model, batch(shape)) <= 1e-4
    with pytest.raises(ConfigError, match="input_shape.*dynamic sizes"):
        program_input_shape(model)
    assert program_input_shape(model, [1, 3, 32, 48]) == [1, 3, 32, 48]
    with pytest.raises(ConfigError, match="does not fit"):
        program_input_shape(model, [1, 1, 32, 48])


def test_the_forward_is_readable_python_and_the_model_copies_and_saves(every_kind, tmp_path):
    model = slimkit.from_inference(every_kind / "pir")
    source = inspect.getsource(type(model).forward)  # to_static (the tracer, jit.save) needs it
    first_conv = next(name for name, layer in model.named_sublayers() if isinstance(layer, paddle.nn.Conv2D))
    assert f"t0 = self.{first_conv}(x)" in source and source.lstrip().startswith("def forward(self, x):")
    x = batch([2, 3, 16, 16])
    copied = copy.deepcopy(model)
    with paddle.no_grad():
        np.testing.assert_array_equal(copied(paddle.to_tensor(x)).numpy(), model(paddle.to_tensor(x)).numpy())
    with compat.legacy_ir():
        paddle.jit.save(model, str(tmp_path / "legacy"), input_spec=model.input_spec())
    paddle.jit.save(model, str(tmp_path / "pir"), input_spec=model.input_spec())
    for program in ("legacy.pdmodel", "pir.json"):
        got = predictor_outputs(tmp_path / program, tmp_path / f"{program.split('.')[0]}.pdiparams", x)
        with paddle.no_grad():
            assert np.abs(list(got.values())[0] - model(paddle.to_tensor(x)).numpy()).max() <= 1e-4


_LEGACY_SESSION = """
import sys, numpy as np, paddle, slimkit
from slimkit import compat
x = paddle.rand([2, 3, 16, 16])
outs = []
for form in ("pir", "legacy"):
    model = slimkit.from_inference(sys.argv[1] + "/" + form)
    with paddle.no_grad():
        outs.append(model(x).numpy())
print(compat.pir_enabled(), paddle.in_dynamic_mode(), float(np.abs(outs[0] - outs[1]).max()))
"""


def test_importing_leaves_the_session_as_it_was_also_on_the_legacy_ir(every_kind):
    slimkit.from_inference(every_kind / "legacy")
    assert paddle.in_dynamic_mode() and compat.pir_enabled()
    # A session started with FLAGS_enable_pir_api=0: the .json program is read with PIR, scoped.
    env = {**os.environ, "FLAGS_enable_pir_api": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _LEGACY_SESSION, str(every_kind)], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    pir, dynamic, difference = done.stdout.split()[-3:]
    assert (pir, dynamic) == ("False", "True") and float(difference) <= 1e-5


@pytest.fixture(scope="module")
def unsupported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unsupported")
    return save(Unsupported(), folder / "inference", [None, 3, 8, 8])


def test_ops_it_cannot_rebuild_are_named_all_at_once_in_one_error(unsupported):
    with pytest.raises(ModelError) as caught:
        slimkit.from_inference(unsupported)
    message = caught.value.message
    assert "`cumsum` (2x)" in message and "`flip` (1x)" in message and "3 op(s) of 2 kind(s)" in message
    assert "register_translator" in caught.value.hint


def test_a_registered_translator_teaches_it_an_op(unsupported):
    @register_translator(["cumsum", "flip"])
    def cumsum_or_flip(op, ctx):
        if op.name == "flip":
            return ctx.assign(op.outputs[0], f"paddle.flip({ctx.tensor(op.inputs[0])}, {list(op.attrs['axis'])})")
        ctx.assign(op.outputs[0], f"paddle.cumsum({ctx.tensor(op.inputs[0])}, axis={ctx.arg(op.inputs[1])})")

    try:
        model = slimkit.from_inference(unsupported)
        assert max_difference(model, batch([2, 3, 8, 8])) <= 1e-4
    finally:
        unregister_translator("cumsum")
        unregister_translator("flip")


def test_where_the_model_is_the_error_says_what_to_give(tmp_path, every_kind):
    with pytest.raises(ModelError, match="no exported inference model at"):
        slimkit.from_inference(tmp_path / "nothing")
    (tmp_path / "config.json").write_text("{}")  # an exporter's side file is not a model
    with pytest.raises(ModelError, match="holds no exported inference model"):
        slimkit.from_inference(tmp_path)
    for name in ("a", "b"):
        for suffix in (".json", ".pdiparams"):
            (tmp_path / f"{name}{suffix}").write_bytes((every_kind / "pir" / f"inference{suffix}").read_bytes())
    with pytest.raises(ModelError, match="holds 2 exported models"):
        slimkit.from_inference(tmp_path)
    assert slimkit.from_inference(tmp_path / "a.json").program_signature["program"].endswith("a.json")
