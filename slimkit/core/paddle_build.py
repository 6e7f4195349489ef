"""Find the user's own Paddle build before anything else imports it.

slimkit declares no Paddle dependency (as PaddleSlim, PaddleSeg and PaddleDetection do not):
`paddlepaddle` and `paddlepaddle-gpu` provide the same `paddle` module, and installing one
beside the other breaks the environment. Users choose the build; this module says clearly
when there is none, or one slimkit was not built for.
"""

SUPPORTED = ((3, 3), (3, 4))  # [3.3, 3.4): the minor whose internals slimkit.compat is tested against
INSTALL = ('install one: pip install "paddlepaddle>=3.3,<3.4" (CPU; or pip install -e ".[cpu]" in a '
           'slimkit checkout), or the GPU build paddlepaddle-gpu 3.3 for your CUDA from '
           'https://www.paddlepaddle.org.cn/install/quick')


class PaddleMissingError(ImportError):
    """No usable Paddle: absent, or a version outside the supported range."""


def _version_tuple(text):
    parts = []
    for piece in str(text).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (2 - len(parts)))


def missing(err):
    """The error for a failed `import paddle`."""
    return PaddleMissingError(f"slimkit needs PaddlePaddle 3.3, and no paddle module can be imported ({err}); "
                              f"{INSTALL}")


def check_version(paddle):
    """Raise PaddleMissingError, naming both install commands, when `paddle` is outside the supported range."""
    version = getattr(paddle, "__version__", "unknown")
    if version == "0.0.0":  # a build from Paddle's own source tree reports 0.0.0: the user knows best
        return paddle
    low, high = SUPPORTED
    if not low <= _version_tuple(version) < high:
        raise PaddleMissingError(f"slimkit needs PaddlePaddle >=3.3,<3.4, found paddle {version}; {INSTALL}")
    return paddle

