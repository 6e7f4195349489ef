"""Where an exported inference model's files are: a prefix, a program file, or a folder holding one model.

Paddle writes a model as `<prefix>.json` (Paddle 3, PIR) or `<prefix>.pdmodel` (the legacy
program), with its weights in `<prefix>.pdiparams`. Exporters add other files beside them
(PaddleX's `inference.yml`, a `config.json`): only a program file with a `.pdiparams` of the
same prefix counts as a model. With both a `.json` and a `.pdmodel` of one prefix, the `.json`
is read, as Paddle 3's own loader does.
"""

import dataclasses
from pathlib import Path

from ..core.errors import ModelError

PROGRAM_SUFFIXES = (".json", ".pdmodel")
PARAMS_SUFFIX = ".pdiparams"


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """The program and parameter files of one exported model."""

    prefix: Path
    program: Path
    params: Path

    @property
    def format(self):
        """"pir" for a `.json` program, "legacy" for a `.pdmodel`."""
        return "pir" if self.program.suffix == ".json" else "legacy"


def locate(path):
    """The ModelFiles `path` names: a prefix (`dir/inference`), a program file, or a folder with one model."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _only_model_in(path)
    if path.suffix in PROGRAM_SUFFIXES + (PARAMS_SUFFIX,) and path.is_file():
        path = path.with_suffix("")
    found = _model_at(path)
    if found is None:
        raise ModelError(f"no exported inference model at {path}: expected {path}.json or {path}.pdmodel "
                         f"with {path}{PARAMS_SUFFIX}",
                         "give the model's prefix (e.g. output/inference), its program file or its folder")
    return found


def _model_at(prefix):
    params = Path(f"{prefix}{PARAMS_SUFFIX}")
    if not params.is_file():
        return None
    for suffix in PROGRAM_SUFFIXES:
        program = Path(f"{prefix}{suffix}")
        if program.is_file():
            return ModelFiles(Path(prefix).resolve(), program.resolve(), params.resolve())
    return None


def _only_model_in(folder):
    prefixes = sorted({p.with_suffix("") for suffix in PROGRAM_SUFFIXES for p in folder.glob(f"*{suffix}")})
    models = [m for m in (_model_at(p) for p in prefixes) if m is not None]
    if len(models) == 1:
        return models[0]
    if not models:
        raise ModelError(f"{folder} holds no exported inference model (a .json or .pdmodel program with its "
                         f"{PARAMS_SUFFIX})", "give the folder the export wrote, or the model's prefix")
    names = ", ".join(m.prefix.name for m in models)
    raise ModelError(f"{folder} holds {len(models)} exported models ({names})",
                     f"give one prefix, e.g. {folder / models[0].prefix.name}")
