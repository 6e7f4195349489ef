"""slimkit brings no Paddle of its own: the user's CPU or GPU build is used, and a missing one is named."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements():
    return [Requirement(r) for r in importlib.metadata.requires("slimkit") or []]


def test_base_requirements_name_no_paddle_build():
    base = [r.name for r in _requirements() if r.marker is None]
    assert "paddleslim" in base  # the metadata is really read
    assert not [n for n in base if n.startswith("paddlepaddle")]


def test_cpu_extra_pulls_the_supported_cpu_build():
    cpu = [r for r in _requirements() if r.marker is not None and r.marker.evaluate({"extra": "cpu"})
           and not r.marker.evaluate({"extra": ""})]
    assert [r.name for r in cpu] == ["paddlepaddle"]
    assert "3.3.1" in cpu[0].specifier and "3.4.0" not in cpu[0].specifier


def test_setup_py_declares_the_same():
    # The installed metadata could be stale; the source is what a fresh install gets.
    text = (ROOT / "setup.py").read_text()
    install = re.search(r"install_requires=\[(.*?)\]", text, re.S).group(1)
    assert "paddlepaddle" not in re.sub(r"#.*", "", install)
    assert re.search(r'"cpu": \["paddlepaddle>=3\.3,<3\.4"\]', text)


def _import_slimkit_with(setup_code):
    code = f"import sys, types\n{setup_code}\nimport slimkit\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_import_without_paddle_names_both_install_commands():
    out = _import_slimkit_with("sys.modules['paddle'] = None  # as if no Paddle were installed")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("slimkit.core.paddle_build.PaddleMissingError: slimkit needs PaddlePaddle 3.3")
    assert 'pip install "paddlepaddle>=3.3,<3.4"' in last and "paddlepaddle-gpu" in last


def test_import_with_an_unsupported_paddle_names_the_version_found():
    out = _import_slimkit_with("m = types.ModuleType('paddle'); m.__version__ = '2.6.2'; sys.modules['paddle'] = m")
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0
    assert "found paddle 2.6.2" in last and ">=3.3,<3.4" in last and "paddlepaddle-gpu" in last


def test_version_range_edges():
    from slimkit.core import paddle_build

    class Fake:
        pass

    for version, ok in (("3.3.0", True), ("3.3.1", True), ("3.3.0rc1", True), ("0.0.0", True),
                        ("3.2.2", False), ("3.4.0", False), ("2.6.2", False)):
        Fake.__version__ = version
        try:
            paddle_build.check_version(Fake)
            accepted = True
        except paddle_build.PaddleMissingError:
            accepted = False
        assert accepted == ok, version
