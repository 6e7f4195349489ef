"""The code stays lint-clean (ruff, ruff.toml); no function in slimkit/ grows past 60 lines, no class past 300;
one module imports code a config names (slimkit/core/imports.py)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300


def _ruff():
    exe = shutil.which("ruff")
    if exe:
        return [exe]
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_is_clean():
    out = subprocess.run([*_ruff(), "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def long_definitions(folder, kinds=(ast.FunctionDef, ast.AsyncFunctionDef), limit=None):
    """[(file:line, name, lines)] of definitions of `kinds` longer than `limit` (default MAX_FUNCTION_LINES)."""
    limit = MAX_FUNCTION_LINES if limit is None else limit
    found = []
    for path in sorted(Path(folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, kinds):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.name, lines))
    return found


def test_no_function_in_slimkit_is_longer_than_60_lines():
    assert long_definitions(ROOT / "slimkit") == []


def test_no_class_in_slimkit_is_longer_than_300_lines():
    assert long_definitions(ROOT / "slimkit", (ast.ClassDef,), MAX_CLASS_LINES) == []


def test_the_length_checks_find_a_long_function_and_a_long_class(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "long.py").write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES + "\n\ndef g():\n    pass\n")
    assert long_definitions(tmp_path) == [("long.py:1", "f", MAX_FUNCTION_LINES + 1)]
    (tmp_path / "big.py").write_text("class C:\n" + "    x = 1\n" * MAX_CLASS_LINES + "\n\nclass D:\n    pass\n")
    assert long_definitions(tmp_path, (ast.ClassDef,), MAX_CLASS_LINES) == [("big.py:1", "C", MAX_CLASS_LINES + 1)]


# The one place a `package.module:name` is imported, with its refusals (slimkit.core.imports.import_object);
# slimkit/_paths.py imports moved modules by their new path, never a name from a config.
IMPORTERS = {"slimkit/core/imports.py", "slimkit/_paths.py"}


def dynamic_imports(folder):
    """[file:line] of calls to import_module or __import__ in `folder`."""
    found = []
    for path in sorted(Path(folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if called in ("import_module", "__import__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_core_imports_imports_modules_by_name():
    assert [f for f in dynamic_imports(ROOT / "slimkit") if f.partition(":")[0] not in IMPORTERS] == []


def test_the_importer_check_finds_an_import_module_call(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "mod.py").write_text("import importlib\n\n\ndef load(name):\n"
                                     "    return importlib.import_module(name)\n")
    assert dynamic_imports(tmp_path) == ["mod.py:5"]
