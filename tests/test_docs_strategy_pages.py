"""Every built-in strategy has a page under docs/strategies/ that documents every option."""

import dataclasses
from pathlib import Path

import pytest

import slimkit.strategies  # noqa: F401  (registers the built-in strategies)
from slimkit.strategies.base import STRATEGIES

PAGES = Path(__file__).resolve().parents[1] / "docs" / "strategies"
BUILT_IN = sorted((name, cls) for name, cls in STRATEGIES.items() if cls.__module__.startswith("slimkit."))


@pytest.mark.parametrize("name,cls", BUILT_IN, ids=[name for name, _ in BUILT_IN])
def test_strategy_page_lists_every_option(name, cls):
    page = PAGES / f"{cls.__module__.rsplit('.', 1)[-1]}.md"
    assert page.is_file(), f"no page for `type: {name}`: write {page}"
    text = page.read_text()
    assert f"type: {name}" in text, f"{page.name} never shows `type: {name}`"
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f"`{f.name}`" not in text]
    assert not missing, f"{page.name} does not document {missing}"
