"""Reading YAML for run configs and `--set` values, bounded so that no file can exhaust the machine.

A run config is a few hundred values. A YAML file can be made to expand far beyond its
size (aliases of aliases: "billion laughs"), to nest deeper than Python's recursion limit,
or simply to be huge. The text is first streamed through the parser's events, which
cost nothing to hold, and counted as it would expand (an alias counts as everything its
anchor holds); past a bound it is refused before anything is built.
"""

import yaml

from ..core.errors import ConfigError

MAX_BYTES = 500_000     # a real config is a few kilobytes
MAX_VALUES = 20_000     # scalars, lists and mappings after aliases are expanded
MAX_DEPTH = 50          # nested lists and mappings
FIX = "a run config is a small file of plain values: remove the aliases that repeat large parts, or split the work"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it (about 10x faster)


def load_yaml(text, where):
    """The value of YAML `text` (safe tags only); ConfigError naming `where` when it is invalid or too large."""
    try:
        return parse_bounded(text, where)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(where, f"not valid YAML{at}: {getattr(err, 'problem', None) or err}",
                          "fix the YAML syntax (indentation, colons, quotes)") from None


def parse_bounded(text, where):
    """The value of YAML `text`: ConfigError past the bounds, yaml.YAMLError for invalid YAML."""
    if len(text) > MAX_BYTES:
        raise ConfigError(where, f"{len(text):,} characters: more than a run config can be ({MAX_BYTES:,})", FIX)
    _check_expansion(text, where)
    return yaml.load(text, Loader=_Loader)


def _check_expansion(text, where):
    """ConfigError as soon as `text` would expand past MAX_VALUES values or nest past MAX_DEPTH levels."""
    anchored = {}    # anchor -> the number of values it stands for
    open_nodes = []  # [anchor, values so far] of every list or mapping not yet closed
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
            if len(open_nodes) > MAX_DEPTH:
                raise ConfigError(where, f"lists and mappings nest deeper than {MAX_DEPTH} levels", FIX)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, anchored.get(event.anchor, 1)  # an unknown anchor: the loader names it
        else:
            continue
        if anchor is not None:
            anchored[anchor] = size
        if open_nodes:
            open_nodes[-1][1] += size
            size = open_nodes[-1][1]
        if size > MAX_VALUES:
            raise ConfigError(where, f"expands to more than {MAX_VALUES:,} values (through YAML aliases, or "
                                     "a very long file)", FIX)
