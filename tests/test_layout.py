"""The package layout: old module paths still import (the same module), moved internals warn."""

import importlib
import subprocess
import sys
import warnings

import pytest

import slimkit
from slimkit import _paths


@pytest.mark.parametrize("old", sorted(_paths.DOCUMENTED))
def test_documented_old_paths_import_silently_as_the_moved_module(old):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(old)
    assert module is importlib.import_module(_paths.DOCUMENTED[old])
    assert module.__spec__.name == _paths.DOCUMENTED[old]  # the moved module's own spec, not the alias's


def test_documented_names_import_from_their_old_paths():
    from slimkit.engine import EngineProtocol
    from slimkit.report import add_column
    from slimkit.schema import option
    from slimkit.strategy import Strategy

    assert EngineProtocol is slimkit.EngineProtocol and Strategy is slimkit.Strategy
    assert callable(option) and callable(add_column)


def test_moved_internals_import_with_a_warning_naming_the_new_path():
    code = ("import warnings, slimkit; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    from slimkit.pipeline import Pipeline\n"
            "    import slimkit.rundir\n"
            "print(Pipeline is slimkit.Pipeline, [str(x.message) for x in w])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True")
    assert "slimkit.pipeline moved to slimkit.run.pipeline" in out
    assert "slimkit.rundir moved to slimkit.run.rundir" in out


def test_an_old_module_is_an_attribute_of_slimkit_without_importing_it():
    with pytest.warns(DeprecationWarning, match="slimkit.preflight moved to slimkit.run.preflight"):
        assert slimkit.preflight is importlib.import_module("slimkit.run.preflight")
    assert slimkit.device is importlib.import_module("slimkit.core.device")
    with pytest.raises(AttributeError):
        slimkit.no_such_module  # noqa: B018


def test_python_dash_m_slimkit_is_the_command():
    out = subprocess.run([sys.executable, "-m", "slimkit", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("slimkit ")
