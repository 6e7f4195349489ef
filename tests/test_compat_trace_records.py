"""slimkit.compat's clean trace records: a trace that raised cannot hand its parameters to slimkit's next export.

Paddle's dy2static recorder keys each traced program's parameters by `id(program)`; a failed
trace leaves its entry, and a later program given the same id inherits it. The tests make every
program share one id, so the reuse happens every time instead of now and then.
"""

import numpy as np
import paddle
import pytest
from paddle.jit.dy2static import program_translator

from slimkit import compat
from slimkit.deploy import InferenceModel, export_float
from compat_functions_model import PirOnlyFunctions

SPEC = [paddle.static.InputSpec([None, 4, 8], "float32", "x")]


@pytest.fixture
def one_program_id(monkeypatch):
    monkeypatch.setattr(program_translator, "_program_hash", lambda program: 0)
    recorder = program_translator.ProgramTranslator.get_instance()._params_recorder
    before = dict(recorder.params_dict)
    yield recorder
    recorder.params_dict = before


def _failed_legacy_save(tmp_path):
    # Paddle's own functions under the legacy IR fail mid-trace (see test_compat_legacy_functions.py).
    model = PirOnlyFunctions()
    with pytest.raises(TypeError), paddle.pir_utils.OldIrGuard():
        paddle.jit.save(model, str(tmp_path / "failed"), input_spec=SPEC)


def test_a_failed_trace_leaves_records_that_break_the_next_save(tmp_path, one_program_id):
    # If this starts to pass, Paddle no longer hands a program another's records: drop _fresh_trace_records.
    one_program_id.params_dict = {0: {paddle.create_parameter([2], "float32", name="stale_weight")}}
    model = paddle.nn.Linear(8, 3)
    with pytest.raises(KeyError, match="stale_weight"), paddle.pir_utils.OldIrGuard():
        paddle.jit.save(model, str(tmp_path / "plain"), input_spec=[paddle.static.InputSpec([None, 8], "float32")])
    assert paddle.in_dynamic_mode() and compat.pir_enabled()


def test_the_export_after_a_failed_trace_runs_the_new_model(tmp_path, one_program_id):
    _failed_legacy_save(tmp_path)
    stale = dict(one_program_id.params_dict)
    assert stale  # the failed trace left its parameters behind
    paddle.seed(0)
    model = PirOnlyFunctions()
    model.eval()
    prefix = export_float(model, tmp_path / "export", [1, 4, 8])
    x = np.random.RandomState(0).randn(2, 4, 8).astype("float32")
    np.testing.assert_allclose(InferenceModel(prefix, "cpu").run(x), model(paddle.to_tensor(x)).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert one_program_id.params_dict == stale  # the session's own records are back as they were
