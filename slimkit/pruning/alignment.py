"""Channel alignment: pruned layers keep a multiple of the CPU's channel block unless `round_to` says otherwise.

oneDNN (Paddle Inference's CPU backend) computes convolutions in blocked layouts of 8
channels on AVX2 and 16 on AVX-512: a layer left with 45 channels pays for 48 and adds
reorders, so odd counts give back part of what pruning removed. `benchmarks/deploy_latency.py`
compares multiples 1, 8 and 16 on the predictor; its measurements on AVX2 and AVX-512 CPUs
are in docs/benchmarks.md. The default is the block of the CPU slimkit runs on (16 with
AVX-512, else 8); prune on the kind of CPU you deploy to, or set `round_to`.

Small layers: rounding to a multiple moves a layer's count by up to half the multiple,
so for a layer with fewer than 4x the multiple channels the multiple is halved until it
is at most a quarter of the layer (a 16-channel layer rounds to 4, an 8-channel one to 2):
the kept count then stays within 12.5 % of the layer of what the ratio asked. An explicit
`round_to` is applied as given.
"""

import functools


@functools.lru_cache(maxsize=1)
def default_alignment():
    """oneDNN's channel block on this CPU: 16 with AVX-512, 8 otherwise."""
    from ..core.cpu import cpu_features

    return 16 if "avx512f" in cpu_features() else 8


def channel_step(channels, round_to=None):
    """The multiple a group of `channels` keeps: `round_to` if given, else the default alignment."""
    if round_to is not None:
        return max(1, int(round_to))
    step = default_alignment()
    while step > 1 and channels < 4 * step:
        step //= 2
    return step
