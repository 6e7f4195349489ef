"""`import slimkit` leaves numpy and paddle exactly as they were (no alias, no patch, no flag)."""

import json
import os
import subprocess
import sys

import numpy as np

SNAPSHOT = r'''
import json, sys, warnings
import numpy as np
import paddle
import paddle.nn.functional as F

def snapshot():
    modules = {"numpy": np, "numpy.random": np.random, "paddle": paddle, "paddle.nn.functional": F,
               "paddle.base.dygraph.base": paddle.base.dygraph.base, "paddle.Tensor": paddle.Tensor}
    out = {name: {k: id(getattr(m, k)) for k in dir(m) if not k.startswith("__")} for name, m in modules.items()}
    out["session"] = {"pir": paddle.framework.get_flags("FLAGS_enable_pir_api")["FLAGS_enable_pir_api"],
                      "dynamic": paddle.in_dynamic_mode(), "device": paddle.get_device(),
                      "dtype": str(paddle.get_default_dtype()), "numpy_err": np.geterr(),
                      "numpy_print": {k: str(v) for k, v in np.get_printoptions().items()},
                      "warning_filters": len(warnings.filters), "cv2": "cv2" in sys.modules}
    return out

before = snapshot()
import slimkit
import slimkit.pruning, slimkit.sparsity, slimkit.distill, slimkit.quant, slimkit.strategies, slimkit.config
after = snapshot()
changed = {section: sorted(k for k in set(before[section]) | set(after[section])
                           if before[section].get(k) != after[section].get(k))
           for section in before}
print(json.dumps({k: v for k, v in changed.items() if v}))
'''


def test_import_slimkit_changes_nothing_in_numpy_or_paddle():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_the_pruner_aliases_come_only_with_paddleslims_pruners():
    # np.product is untouched by `import slimkit` and by the quantization import; only PaddleSlim's
    # pruners bring the alias, and only where numpy 2 removed np.product (numpy 1 keeps its own).
    code = ("import numpy as np; orig = getattr(np, 'product', None); import paddle, slimkit; "
            "from slimkit import compat; a = getattr(np, 'product', None) is orig; compat.import_paddleslim(); "
            "b = getattr(np, 'product', None) is orig; compat.import_paddleslim_pruners(); "
            "print(a, b, np.product is np.prod, hasattr(paddle.base.dygraph.base, '_to_static_mode_guard_'))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    numpy2 = int(np.__version__.split(".")[0]) >= 2
    assert out.stdout.split()[-4:] == ["True", "True", str(numpy2), "True"]


def test_the_top_level_is_narrow_and_old_names_point_to_their_subpackage():
    import warnings

    import slimkit
    from slimkit import sparsity

    public = {n for n in dir(slimkit) if not n.startswith("_") and not isinstance(getattr(slimkit, n), type(sys))}
    assert public == set(slimkit.__all__) - {"__version__"}
    assert len(slimkit.__all__) <= 40 and "convert" not in public and "Random" not in public
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert slimkit.PolynomialDecay is sparsity.PolynomialDecay
    assert "moved to slimkit.sparsity.PolynomialDecay" in str(caught[0].message)
