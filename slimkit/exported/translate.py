"""Op -> Python translation: a registry of small functions, one per op kind, and the builder they write with.

Every op of the program is looked up here by name (without `pd_op.`) and its translator
writes the line of the forward that computes it:

    from slimkit.exported import register_translator

    @register_translator("softsign")
    def softsign(op, ctx):
        ctx.assign(op.outputs[0], f"paddle.nn.functional.softsign({ctx.tensor(op.inputs[0])})")

A translator reads operands through the builder (`ctx.tensor(value)` an expression of a
tensor, `ctx.const(value)` a constant's Python value, `ctx.arg(value)` either), writes with
`ctx.assign(outputs, code)`, makes layers with `ctx.layer(...)` and raises `Unsupported(reason)`
for what it cannot rebuild. Ops whose operands are all parameters or constants (shape
vectors, a bias reshaped for broadcasting) are translated only where something reads them,
so a pattern that takes them in (a conv with its bias add) leaves nothing behind.
"""

import re

from ..core.errors import ModelError
from .layers import Parameters
from .program import INPUT_OPS, OUTPUT_OPS

_TRANSLATORS = {}
HOLDER = "params"  # the attribute of the Parameters layer


class Unsupported(Exception):
    """Raised by a translator: the op cannot be rebuilt, for the reason given."""


def register_translator(names, fn=None, replace=True):
    """Use `fn(op, ctx)` to translate the ops named `names` (one or several); usable as a decorator."""
    def register(fn):
        if not callable(fn):
            raise ModelError(f"a translator must be a function fn(op, ctx), got {type(fn).__name__}")
        for name in [names] if isinstance(names, str) else list(names):
            key = _key(name)
            if not replace and key in _TRANSLATORS:
                raise ModelError(f"op {name!r} already has a translator", "pass replace=True to override it")
            _TRANSLATORS[key] = fn
        return fn

    return register(fn) if fn is not None else register


def unregister_translator(name):
    _TRANSLATORS.pop(_key(name), None)


def translator_for(name):
    return _TRANSLATORS.get(_key(name))


def registered_translators():
    """Sorted names of every op kind with a translator."""
    return sorted(_TRANSLATORS)


def _key(name):
    if not isinstance(name, str) or not name:
        raise ModelError(f"an op name must be a non-empty string, got {name!r}", "e.g. 'relu' or 'builtin.combine'")
    return name[len("pd_op."):] if name.startswith("pd_op.") else name


def _token(value):
    return f"\x00{value.id}\x01"


_TOKEN = re.compile("\x00(\\d+)\x01")


class Statement:
    def __init__(self, targets, code, where=""):
        self.targets, self.code, self.where = targets, code, where


class Builder:
    """What translators write with: expressions of values, statements of the forward, layers."""

    def __init__(self, program):
        self.program = program
        self.statements = []
        self.exprs = {}  # value id -> expression (a token of a named value, a literal, self.<attr>)
        self.layers = {}  # attribute -> Layer, in the order they are made
        self.keys = {}  # attribute -> what it was made from (a layer called twice must be the same)
        self.owner = {}  # parameter name -> attribute of the layer holding it
        self.consumed = set()  # op indices a translator took in with its own op
        self.failures = []  # (op, reason)
        self.live = _live_ops(program)
        self.lazy = _lazy_ops(program)
        self.arguments = {}  # input name -> forward argument name
        self._current = None

    # -- the translation
    def run(self):
        for op in self.program.ops:
            if op.name in INPUT_OPS:
                self._argument(op)
            elif op.name in OUTPUT_OPS or op.index in self.consumed or op.index not in self.live:
                continue
            elif op.index not in self.lazy:
                self._translate(op)
        return self

    def _argument(self, op):
        name = safe_name(op.attrs["name"], taken=set(self.arguments.values()) | {"self"})
        self.arguments[op.attrs["name"]] = name
        self.exprs[op.outputs[0].id] = name

    def _translate(self, op):
        fn = translator_for(op.name)
        outer, self._current = self._current, op
        try:
            if fn is None:
                raise Unsupported("slimkit has no translator for it")
            fn(op, self)
        except Unsupported as err:
            self._fail(op, str(err))
        except Exception as err:  # a translator's own bug or Paddle refusing a layer: recorded with the rest
            self._fail(op, f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")
        finally:
            self._current = outer

    def _fail(self, op, reason):
        self.failures.append((op, reason))
        for out in op.outputs:
            if out is not None and out.id not in self.exprs:
                self.exprs[out.id] = "None"

    # -- reading operands
    def tensor(self, value):
        """A Python expression of `value` as a tensor (a parameter, a constant or a computed value)."""
        if value is None:
            return "None"
        if value.id in self.exprs:
            return self.exprs[value.id]
        if value.param is not None:
            self.exprs[value.id] = self.parameter(value.param)
            return self.exprs[value.id]
        producer = value.producer
        if producer is not None and producer.index in self.lazy:
            self._translate(producer)
            if value.id in self.exprs:
                return self.exprs[value.id]
        raise Unsupported(f"it reads a value of `{producer.name if producer else '?'}` that was not rebuilt")

    def const(self, value):
        """The Python value of a constant (`full`, `full_int_array`, a list of them), or None."""
        op = value.producer if value is not None else None
        if op is None:
            return None
        if op.name == "full_int_array":
            return [int(v) for v in op.attrs["value"]]
        if op.name == "full" and list(op.attrs.get("shape", [])) in ([], [1]):
            return python_scalar(op.attrs["value"], op.attrs.get("dtype", "float32"))
        if op.name == "builtin.combine":
            items = [self.const(v) for v in op.inputs]
            if all(isinstance(v, (int, float)) for v in items):
                return items
        return None

    def arg(self, value):
        """A constant's literal, a list's `[a, b]` (constants as literals), or the tensor's expression."""
        constant = self.const(value)
        if constant is not None:
            return literal(constant)
        op = value.producer if value is not None else None
        if op is not None and op.name == "builtin.combine":
            return "[" + ", ".join(self.arg(v) for v in op.inputs) + "]"
        return self.tensor(value)

    def items(self, value):
        """The expressions of the tensors a `builtin.combine` list holds."""
        op = value.producer
        if op is None or op.name != "builtin.combine":
            raise Unsupported("a list operand that is not built by builtin.combine")
        return [self.tensor(v) for v in op.inputs]

    def param_view(self, value):
        """(parameter name, shape) if `value` is a parameter or a reshape of one to a constant shape, else None."""
        op = value.producer if value is not None else None
        if value is not None and value.param is not None:
            return value.param, list(value.shape)
        if op is None or op.name not in ("reshape", "squeeze", "unsqueeze", "flatten") or op.index not in self.lazy:
            return None
        inner = self.param_view(op.inputs[0])
        return (inner[0], list(value.shape)) if inner and all(d > 0 for d in value.shape) else None

    def only_user(self, value):
        """The one live (op, operand index) reading `value`, or None (several readers, or a program output)."""
        users = [(op, i) for op, i in value.users if op.index in self.live]
        if len(users) != 1 or users[0][0].name in OUTPUT_OPS:
            return None
        return users[0]

    # -- writing
    def assign(self, outputs, code):
        """Add the statement `outputs = code`; `outputs` is a Value or a list (None for results not kept)."""
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        targets = []
        returned = {v.id for _, v in self.program.outputs}
        for out in outputs:
            used = out is not None and (out.id in returned or any(op.index in self.live for op, _ in out.users))
            targets.append(out.id if used else None)
            if used:
                self.exprs[out.id] = _token(out)
        where = self._current.where if self._current is not None else ""
        self.statements.append(Statement(targets, code, where))

    def bind(self, value, expr):
        """`value` is `expr` (an alias: an identity op, an output taken in by another op's translation)."""
        self.exprs[value.id] = expr

    def consume(self, *ops):
        """These ops are computed by the current translation (their outputs bound or assigned by it)."""
        self.consumed.update(op.index for op in ops)

    def layer(self, param_name, make, key, params=()):
        """`self.<attr>` of the layer named after `param_name`; `make()` builds it the first time.

        `key` says what the layer computes: a second op with the same weight and key calls the same
        layer (a layer called twice); `params` are the parameters the layer takes over.
        """
        if param_name in self.owner:
            attr = self.owner[param_name]
            if self.keys.get(attr) != key:
                raise Unsupported(f"parameter {param_name} is shared with an op of another kind or settings")
            return f"self.{attr}"
        for p in params:
            if p in self.owner:
                raise Unsupported(f"parameter {p} is shared with another layer")
        attr = safe_name(param_name.split(".")[0], taken=set(self.layers) | {HOLDER})
        self.layers[attr] = make()
        self.keys[attr] = key
        for p in (param_name, *params):
            self.owner[p] = attr
        return f"self.{attr}"

    def parameter(self, name):
        """`self.params.<name>`: a parameter read by an op that is not a layer of its own."""
        if name in self.owner:
            if self.owner[name] != HOLDER:
                raise Unsupported(f"parameter {name} belongs to layer {self.owner[name]} and is read elsewhere too")
            return f"self.{HOLDER}.{self.keys[('param', name)]}"
        holder = self.layers.get(HOLDER)
        if holder is None:
            holder = self.layers[HOLDER] = Parameters()
        attr = safe_name(name, taken=set(holder._parameters))
        holder.add(attr, self.program.params[name], self.program.trainable.get(name, True))
        self.owner[name], self.keys[("param", name)] = HOLDER, attr
        return f"self.{HOLDER}.{attr}"

    def array(self, name):
        """The numpy values of parameter `name`."""
        return self.program.params[name]

    def trainable(self, name):
        return self.program.trainable.get(name, True)

    def fail_message(self):
        """One line per op kind that could not be rebuilt: `name` (count): reasons."""
        by_kind = {}
        for op, reason in self.failures:
            by_kind.setdefault(op.name, {}).setdefault(reason, 0)
            by_kind[op.name][reason] += 1
        return "; ".join(f"`{name}` ({sum(r.values())}x): {', '.join(r)}" for name, r in sorted(by_kind.items()))

    # -- the forward's body
    def body(self):
        """The forward's lines (names assigned, freed after their last use) and its return expression."""
        outputs = []
        for _, value in self.program.outputs:
            try:
                outputs.append(self.tensor(value))
            except Unsupported:
                outputs.append("None")
        ret = outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ("," if len(outputs) == 1 else "") + ")"
        return _allocate_names(self.statements, ret)


def _allocate_names(statements, ret):
    """Give every value a variable name; a name is reused once its value is read for the last time."""
    last = {}
    for i, st in enumerate(statements):
        for ref in _TOKEN.findall(st.code):
            last[int(ref)] = i
    for ref in _TOKEN.findall(ret):
        last[int(ref)] = len(statements)
    names, free, counter, lines = {}, [], [0], []

    def fresh():
        if free:
            return free.pop()
        counter[0] += 1
        return f"t{counter[0] - 1}"

    def resolve(code):
        return _TOKEN.sub(lambda m: names[int(m.group(1))], code)

    for i, st in enumerate(statements):
        code = resolve(st.code)
        for ref in dict.fromkeys(int(r) for r in _TOKEN.findall(st.code)):
            if last.get(ref) == i:
                free.append(names[ref])
        targets = []
        for target in st.targets:
            if target is None or target not in last:
                targets.append("_")
            else:
                names[target] = fresh()
                targets.append(names[target])
        comment = f"  # {st.where.strip('/')}" if st.where else ""
        lines.append(f"{', '.join(targets)} = {code}{comment}")
    return lines, resolve(ret)


def _live_ops(program):
    """Indices of the ops the program's outputs depend on."""
    live, stack = set(), [v for _, v in program.outputs]
    while stack:
        value = stack.pop()
        op = value.producer if value is not None else None
        if op is None or op.index in live:
            continue
        live.add(op.index)
        stack.extend(v for v in op.inputs if v is not None)
    return live


def _lazy_ops(program):
    """Indices of the ops computed from parameters and constants only (translated where they are read)."""
    lazy = set()
    for op in program.ops:
        if op.name in INPUT_OPS or op.name in OUTPUT_OPS:
            continue
        if all(v is None or v.param is not None or (v.producer is not None and v.producer.index in lazy)
               for v in op.inputs):
            lazy.add(op.index)
    return lazy


def safe_name(name, taken=()):
    """`name` as a Python identifier that is not in `taken` and not an attribute of paddle.nn.Layer."""
    import keyword

    import paddle

    text = re.sub(r"\W", "_", str(name)) or "v"
    if text[0].isdigit() or keyword.iskeyword(text) or hasattr(paddle.nn.Layer, text):
        text = f"_{text}" if text[0].isdigit() else f"{text}_"
    out, n = text, 1
    while out in taken:
        out, n = f"{text}_{n}", n + 1
    return out


def python_scalar(value, dtype):
    if dtype == "bool":
        return bool(value)
    if dtype.startswith("int") or dtype.startswith("uint"):
        return int(value)
    return float(value)


def literal(value):
    """Python source of a constant: ints, floats (exact), bools, strings, lists of them."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"float({str(value)!r})"
        return repr(value)
    return repr(value)
