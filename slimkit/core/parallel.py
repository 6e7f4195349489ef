"""Data-parallel runs on paddle.distributed: ranks, collectives, and decisions made once.

The only module that calls `paddle.distributed`. A process started by
`python -m paddle.distributed.launch` (or `slimkit run --nproc N`) finds its rank and the
number of processes in the environment the launcher sets (`PADDLE_TRAINER_ID`,
`PADDLE_TRAINERS_NUM`). With one process nothing here touches paddle.distributed: every
helper is the identity (`broadcast(x)` is `x`, `all_gather(x)` is `[x]`, `on_main(fn)` is
`fn()`), so a single-process run behaves exactly as before.

Who does what in a run of N processes:

- training: every rank trains on its share of each global batch (per-rank batch x N);
  after each backward pass the gradients are averaged over the ranks in one all-reduce
  (`average_gradients`), so every rank takes the same optimizer step. State that is not
  trained by gradients (batch-norm statistics, quantization scales) is averaged after
  training (`sync_state`), and the weights are then checked equal on every rank.
  (Not `paddle.DataParallel`: in Paddle 3.3.1 its gradient hooks stay on the parameters
  after the wrapper is gone, and the next wrapper of the same model, the second training
  stage of a pipeline, crashes in backward with a segmentation fault, measured with gloo);
- decisions (pruned channels, masks, scales, scan results) are computed the same way on
  every rank and checked equal (`check_equal`), or computed once (`on_main`, `all_gather`);
- files (checkpoints, reports, the console table) are written by rank 0 only (`on_main`),
  which hands its result, or its error, to every rank.

Ranks that arrive together exchange through gloo. Where one may wait long for another
(rank 0's results in `on_main`, the rounds of a sharded scan) the exchange goes through
paddle.distributed's TCP store instead: gloo's collectives give up after 30 s (measured).

A rank that fails exits at once (slimkit.run.cli); a rank waiting for it in a collective gets
an error from gloo as soon as the connection closes (`PEER_LOST`), and
`paddle.distributed.launch` stops the remaining ranks (it polls them every 2 s), so a
failure ends the run within seconds instead of leaving the others waiting.
"""

import contextlib
import hashlib
import json
import os

import numpy as np

from .errors import ParallelError

_state = {"initialized": False, "local": 0, "exchanges": 0}
PEER_LOST = "lost contact with another rank"  # the error of a rank whose peer failed first (not the cause)


# --- who am I ----------------------------------------------------------------------------
def launched_world_size():
    """How many processes the launcher started (1 for a plain process)."""
    return max(1, int(os.environ.get("PADDLE_TRAINERS_NUM") or 1))


def launched_rank():
    return int(os.environ.get("PADDLE_TRAINER_ID") or 0) if launched_world_size() > 1 else 0


def world_size():
    """Processes sharing the work now: 1 in a plain process and inside `alone()`."""
    return 1 if _state["local"] else launched_world_size()


def rank():
    """This process's share index (0 ... world_size() - 1); 0 inside `alone()`."""
    return 0 if _state["local"] else launched_rank()


def is_main():
    """True on the rank that writes files and prints (rank 0), also inside `alone()`."""
    return launched_rank() == 0


def active():
    """True when collectives run: several processes, outside `alone()`."""
    return world_size() > 1


def label():
    """`rank R of N` for messages of a data-parallel run; empty for a single process."""
    n = launched_world_size()
    return f"rank {launched_rank()} of {n}" if n > 1 else ""


@contextlib.contextmanager
def alone():
    """Inside: this process works by itself (world size 1, no collectives), e.g. its share of a scan."""
    _state["local"] += 1
    try:
        yield
    finally:
        _state["local"] -= 1


def init():
    """Join the other ranks once (gloo on CPU, NCCL on GPUs); nothing with one process."""
    if launched_world_size() == 1 or _state["initialized"]:
        return
    import paddle.distributed as dist

    dist.init_parallel_env()
    _state["initialized"] = True


@contextlib.contextmanager
def _peers(what):
    """A peer that is gone (a closed connection, a server that went away) becomes a ParallelError saying so."""
    try:
        yield
    except (RuntimeError, ValueError, OSError) as err:
        # gloo raises RuntimeError; paddle's TCP store a ValueError ("TCP connection reset by peer") or OSError.
        if not isinstance(err, RuntimeError) and not _connection_lost(err):
            raise
        raise ParallelError(f"{PEER_LOST} during {what}: {str(err).splitlines()[0][:200]}",
                            "another rank failed or was stopped: its own error is the cause") from None


def _connection_lost(err):
    text = str(err).lower()
    return isinstance(err, ConnectionError) or any(w in text for w in ("tcp", "connection", "socket", "broken pipe"))


def _exchange(value, senders, wait=False):
    """The JSON-able values of the ranks in `senders` (this rank's `value` among them if it sends), on every rank.

    Through gloo when the ranks arrive together (fast). With `wait`, through
    paddle.distributed's TCP store (rank 0 serves it), where a rank may wait as long as
    another works alone (exports, timing, a long scan group): gloo gives up after 30 s
    (measured), the store does not, but each exchange there costs about 90 ms (measured).
    """
    init()
    if not wait:
        import paddle.distributed as dist

        out = []
        with _peers("an exchange between ranks"):
            if list(senders) == [0]:
                out = [json.dumps(value)] if rank() == 0 else [None]
                dist.broadcast_object_list(out, src=0)
            else:
                dist.all_gather_object(out, json.dumps(value))
        return [json.loads(v) for v in out]
    from paddle.base import core

    # Every rank exchanges in the same order: the running number names the same keys on all of them.
    _state["exchanges"] += 1
    key = f"slimkit/{_state['exchanges']}/"
    with _peers("an exchange between ranks"):
        store = core.create_or_get_global_tcp_store()
        if rank() in senders:
            store.set(key + str(rank()), json.dumps(value).encode())
        return [json.loads(bytes(store.get(key + str(r))).decode()) for r in senders]


# --- collectives (identities with one process) ----------------------------------------------
def barrier(wait=False):
    """Wait until every rank is here (`wait`: one may come much later, see `_exchange`)."""
    if active():
        _exchange(None, range(world_size()), wait)


def broadcast(value, wait=False):
    """Rank 0's JSON-able `value` on every rank (`wait`: rank 0 may come much later)."""
    if not active():
        return value
    return _exchange(value, [0], wait)[0]


def all_gather(value, wait=False):
    """`[value of rank 0, value of rank 1, ...]` of a JSON-able value, on every rank (`wait`: see `_exchange`)."""
    if not active():
        return [value]
    return _exchange(value, range(world_size()), wait)


def all_sum(values):
    """Element-wise sums over the ranks of a list of numbers (float64: integers stay exact below 2**53)."""
    if not active():
        return list(values)
    import paddle

    return [float(v) for v in _all_reduce(paddle.to_tensor(np.asarray(values, dtype=np.float64))).numpy()]


def _all_reduce(tensor):
    """Sum `tensor` over the ranks in place (gloo/NCCL): for the ranks' lockstep work (training steps)."""
    init()
    import paddle.distributed as dist

    with _peers("all_reduce"):
        dist.all_reduce(tensor)
    return tensor


def average_gradients(parameters):
    """Replace every gradient by its mean over the ranks (one all-reduce of all of them); nothing with one process.

    Parameters without a gradient keep none. Every rank then takes the same optimizer step.
    """
    if not active():
        return
    import paddle

    with_grad = [p for p in parameters if p.grad is not None]
    if not with_grad:
        return
    flat = _all_reduce(paddle.concat([p.grad.reshape([-1]) for p in with_grad])) / world_size()
    offset = 0
    for p in with_grad:
        size = int(np.prod(p.shape))
        p.grad.set_value(flat[offset:offset + size].reshape(p.grad.shape))
        offset += size


def digest(value):
    """A short hash of a JSON-able value or numpy array (what `check_equal` compares)."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value).tobytes() + str((value.dtype, value.shape)).encode()
    else:
        data = json.dumps(value, sort_keys=True).encode()
    return hashlib.sha1(data).hexdigest()


def check_equal(what, value):
    """ParallelError on every rank if `value` (JSON-able, an array or a digest) differs between ranks.

    `value` may be a function giving it, so a single process does not even compute it.
    """
    if not active():
        return
    value = value() if callable(value) else value
    differing = disagreeing(all_gather(value if isinstance(value, str) else digest(value)))
    if differing:
        raise ParallelError(f"ranks disagree on {what}: rank(s) {', '.join(map(str, differing))} differ from rank 0",
                            "every rank must compute the same decision from the same weights and data; this is a "
                            "bug or a source of randomness that is not seeded the same on every rank")


def disagreeing(values):
    """The ranks whose gathered value differs from rank 0's."""
    return [r for r, v in enumerate(values) if v != values[0]]


# --- rank 0 only -----------------------------------------------------------------------------
def on_main(fn, share=None, receive=None):
    """Run `fn()` on rank 0 only; with `share`, every rank learns its result (or its error).

    Rank 0 returns `fn()`'s result. With `share` (which makes the result JSON-able) the
    other ranks wait for it and return `receive(share(result))` (`receive` rebuilds it),
    or raise its error as a ParallelError with its message and exit code. Without `share`
    (work for rank 0's files) they go on at once and return None; an error then ends rank
    0, and the launcher the others. Rank 0 runs `fn` alone (no collectives inside) and its
    random state is put back after, so the ranks' random streams stay in step. With one
    process this is `fn()`.
    """
    if not active():
        return fn()
    if share is None:
        if rank() == 0:
            with _main_alone():
                fn()
        return None
    outcome, error, result = None, None, None
    if rank() == 0:
        with _main_alone():
            try:
                result = fn()
                outcome = {"result": share(result)}
            except BaseException as err:  # every rank learns of it, so none waits for rank 0
                error = err
                outcome = {"error": _describe(err)}
    outcome = broadcast(outcome, wait=True)  # the others may wait for rank 0 for minutes
    if error is not None:
        raise error
    if "error" in outcome:
        raise ParallelError(f"rank 0 failed: {outcome['error']['message']}", outcome["error"]["hint"],
                            outcome["error"]["exit_code"])
    if rank() == 0:
        return result
    return receive(outcome["result"]) if receive else outcome["result"]


@contextlib.contextmanager
def _main_alone():
    # Rank 0 working on its own: no collectives inside, and its random state put back after,
    # so the ranks' random streams stay in step.
    from .seeding import kept_random_state

    with alone(), kept_random_state():
        yield


def _describe(err):
    from .errors import SlimkitError

    if isinstance(err, SlimkitError):
        return {"message": err.message, "hint": err.hint, "exit_code": err.exit_code}
    return {"message": f"{type(err).__name__}: {err}", "hint": None, "exit_code": 1}


# --- data and models -------------------------------------------------------------------------
def shard_range(count):
    """`(start, stop)` of this rank's contiguous share of `count` items: every item on exactly one rank, no padding."""
    n, r = world_size(), rank()
    return count * r // n, count * (r + 1) // n


def batch_share(batch, batch_size):
    """This rank's `batch_size` rows of a global batch of `batch_size x world_size()` (rank r: the r-th block).

    The same assignment as paddle.io.DistributedBatchSampler: global batch k of one
    permutation is split into N consecutive blocks, one per rank.
    """
    start = rank() * batch_size
    return batch[start:start + batch_size]


def distributed_sampler(dataset, batch_size, shuffle, seed):
    """A paddle.io.DistributedBatchSampler for this rank (a user's Dataset; drop_last, `seed` orders the epoch)."""
    import paddle

    sampler = paddle.io.DistributedBatchSampler(dataset, batch_size, num_replicas=world_size(), rank=rank(),
                                                shuffle=shuffle, drop_last=True)
    sampler.set_epoch(seed)
    return sampler


def sync_state(model, what="the weights after training"):
    """Average the tensors that differ between ranks and are not trained by gradients, then check all are equal.

    Batch-norm running statistics and quantization scales (parameters too, but updated in
    the forward pass, never given a gradient) follow each rank's own batches; their mean over
    the ranks is the estimate over the whole global batch. Parameters trained by the averaged
    gradients (they hold one, zeroed after the step) are equal already; a difference there
    is an error.
    """
    if not active():
        return
    import paddle

    state = model.state_dict()
    trained = {id(p) for p in model.parameters() if p.grad is not None}
    names = sorted(state)
    hashes = all_gather([digest(state[k].numpy()) for k in names])
    for i, name in enumerate(names):
        tensor = state[name]
        differs = any(h[i] != hashes[0][i] for h in hashes)
        if differs and id(tensor) not in trained and paddle.is_floating_point(tensor):
            mean = _all_reduce(paddle.to_tensor(tensor.numpy().astype(np.float64))).numpy() / world_size()
            tensor.set_value(mean.astype(tensor.numpy().dtype))
    check_equal(what, [digest(state[k].numpy()) for k in names])
