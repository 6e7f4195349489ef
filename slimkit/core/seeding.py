"""Seeds: runs repeat exactly by default, and the user's random state is left as it was."""

import contextlib

import numpy as np
import paddle


def set_seed(seed):
    paddle.seed(seed)
    np.random.seed(seed)


@contextlib.contextmanager
def kept_random_state():
    """Run the block, then put paddle's and numpy's random state back as it was before it."""
    paddle_state, numpy_state = paddle.get_rng_state(), np.random.get_state()
    try:
        yield
    finally:
        paddle.set_rng_state(paddle_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def seeded(seed):
    """Run the block with paddle and numpy seeded by `seed`, then put the caller's random state back."""
    with kept_random_state():
        set_seed(seed)
        yield
