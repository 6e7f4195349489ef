"""Leaving the legacy IR must not restart Paddle's parameter names: a tensor created afterwards
(channel removal creates new parameters) would share its name with an existing one, and the
Paddle Inference export of such a model runs with the wrong weights."""

import paddle

from slimkit import compat


def _fresh_name():
    return paddle.create_parameter([2], "float32").name


def test_names_continue_after_the_legacy_ir_scope():
    before = {_fresh_name(), _fresh_name()}
    with compat.legacy_ir():
        pass
    assert _fresh_name() not in before


def test_names_restart_without_the_fix():
    # Paddle's own guard (what legacy_ir wraps) enters a fresh name scope on the way back to dygraph.
    first = _fresh_name()
    names = {first}
    for _ in range(3):
        with paddle.pir_utils.OldIrGuard():
            pass
        names.add(_fresh_name())
    assert len(names) < 4, "Paddle no longer restarts parameter names: the fix in compat.session_guard can go"
