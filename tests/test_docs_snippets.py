"""Every Python snippet in README and docs runs, every YAML snippet with stages is a valid config."""

import re
from pathlib import Path

import pytest
import yaml

from slimkit.run.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def snippets(kind):
    out = []
    for page in PAGES:
        for i, code in enumerate(re.findall(rf"```{kind}\n(.*?)```", page.read_text(), re.S)):
            out.append(pytest.param(code, id=f"{page.relative_to(ROOT)}#{i}"))
    return out


@pytest.mark.parametrize("code", snippets("python"))
def test_python_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets may write runs/ folders
    exec(compile(code, "<snippet>", "exec"), {"__name__": "__snippet__"})


@pytest.mark.parametrize("code", snippets("yaml"))
def test_yaml_snippet_is_a_valid_config(code):
    data = yaml.safe_load(code)
    if isinstance(data, dict) and "stages" in data:
        RunConfig.from_dict(data)


def test_config_reference_is_up_to_date():
    from slimkit.run.reference import config_reference

    assert (ROOT / "docs" / "config-reference.md").read_text() == config_reference(), \
        "regenerate: python -m slimkit.run.reference > docs/config-reference.md"


def test_benchmarks_page_holds_every_result():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "collect.py")], capture_output=True, text=True,
                         check=True).stdout
    assert (ROOT / "docs" / "benchmarks.md").read_text() == out, \
        "regenerate: python3 benchmarks/collect.py > docs/benchmarks.md"
