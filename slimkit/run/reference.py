"""Write the config reference (docs/config-reference.md) from the option declarations.

    python -m slimkit.run.reference > docs/config-reference.md

A test regenerates it and fails when the committed file is stale.
"""

import dataclasses
import typing

from ..core.schema import bounds_text, describe


def _default(f):
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(see below)"
    else:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def options_table(cls):
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        doc = f.metadata.get("doc", "")
        bounds = bounds_text(f.metadata)
        if bounds:
            doc = f"{doc} ({bounds})" if doc else bounds
        kind = describe(hints[f.name]).replace("|", "\\|")
        doc = doc.replace("|", "\\|")
        rows.append(f"| `{f.name}` | {kind} | {_default(f)} | {doc} |")
    return "\n".join(rows)


def config_reference():
    """The whole reference as Markdown."""
    from .. import strategies  # noqa: F401  (registers every built-in strategy)
    from ..data.datasets import DataConfig
    from ..deploy.formats import ExportConfig
    from ..models.zoo import ModelConfig
    from ..report.rows import ReportConfig
    from ..strategies.base import STRATEGIES
    from ..train.engine import TrainConfig
    from ..train.tasks import TaskConfig
    from .config import RunConfig

    parts = ["# Config reference", "",
             "Generated from the option declarations by `python -m slimkit.run.reference`; "
             "the same declarations check Python arguments and YAML files. "
             "Unknown keys are rejected with the closest valid name.", "",
             "## Top level", "", options_table(RunConfig), ""]
    for key, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig), ("report", ReportConfig),
                     ("export", ExportConfig), ("task", TaskConfig)):
        parts += [f"## `{key}`", "", (cls.__doc__ or "").strip(), "", options_table(cls), ""]
    parts += ["## Stages", "", "Each entry of `stages` is `{type: <type>, ...options}`.", ""]
    for name in sorted(STRATEGIES):
        cls = STRATEGIES[name]
        if cls.__module__.startswith("slimkit."):
            parts += [f"### `type: {name}` ({cls.__name__})", "", (cls.__doc__ or "").strip().split("\n\n")[0], "",
                      options_table(cls), ""]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
