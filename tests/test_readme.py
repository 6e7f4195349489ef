"""The README opens with the two set-up commands, and CI runs exactly the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_install_and_test_commands():
    first, second = commands()[:2]
    assert first.startswith("pip install -e \".[cpu]\"") and "slimkit run configs/quickstart.yaml" in first
    assert "apt-get install -y dataset-fashion-mnist" in second and "pytest" in second


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -m1 '^apt-get update' README.md" in ci
    second = commands()[1]
    assert second.startswith("apt-get update")
    lines = (ROOT / "README.md").read_text().splitlines()
    assert [line for line in lines if line.startswith("apt-get update")][0] == second
