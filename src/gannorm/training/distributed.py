"""Data-parallel training on several processes (``torchrun``): the ranks, their collectives, sync BatchNorm.

``torchrun --nproc_per_node=N -m gannorm train PRESET`` starts N processes (ranks) with ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK`` in their environment; :func:`setup` reads them, joins the process group
(``gloo`` on the CPU, ``nccl`` on CUDA with one GPU per rank, ``cuda:LOCAL_RANK``) and returns the
:class:`Ranks` the trainer works with. A single process is ``Ranks()`` (one rank), for which every
collective below is the identity, so the one-process trainer runs exactly the code it always ran.

The contract (``docs/distributed.md``): ``train.batch_size_d`` and ``batch_size_g`` are global batch sizes.
Every rank runs the same seeded random stream and draws the *global* tensors (real indices, flips, z,
penalty and consistency randomness), then keeps its shard, the contiguous rows
``rank * B/N : (rank + 1) * B/N`` (:meth:`Ranks.shard`). Each rank scales its loss by ``1/N``
(:attr:`Ranks.loss_scale`) and, after each backward, the parameter gradients are summed over the ranks
(:meth:`Ranks.sum_grads`): for a loss that is a mean of per-sample terms over the global batch, the sum of
the shards' ``local_mean / N`` is the global mean, so every rank holds the gradient of the single-process
loss, up to floating-point summation order, and takes the same optimizer step. Every term gannorm trains
with is such a mean or independent of the batch: the losses of :data:`gannorm.losses.LOSSES` (sums of
means of per-sample functions of D's outputs), the penalties of :data:`gannorm.penalties.PENALTIES`
(``weight * mean`` of per-sample functions of input-gradient norms), the consistency term (a mean of
per-sample squared differences), GN and PGN (per-sample normalizations of D's output), and the
orthogonal regularization (a function of the weights, which each rank adds whole, scaled by ``1/N``).
The models are not wrapped in ``DistributedDataParallel`` (whose modules refuse the double backward of
GN, PGN and gradient penalties); every rank holds identical weights, buffers and RNG states, which
:meth:`Ranks.check_agree` verifies bitwise at the end of a run.

:class:`SyncBatchNorm` normalizes G's BatchNorm layers with the global batch's statistics; :func:`sync_batch_norm`
converts a model's BatchNorm layers to it, keeping their state-dict keys, so checkpoints move between any
numbers of ranks.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import Config
from ..errors import ConfigError, GannormError
from ..metrics.sharding import failed_collective
from ..normalizations import METHODS
from ..world import RankPlace

#: seconds a collective waits for the other ranks before the run fails (``train.dist_timeout``)
DEFAULT_TIMEOUT = 600.0
#: the config keys (of ``train``) that are global batch sizes, split over the ranks
BATCH_KEYS = ("batch_size_d", "batch_size_g")

T = TypeVar("T")


class RankFailure(GannormError, RuntimeError):
    """A collective failed: another rank died, hangs, or disagrees. The message (one line, which the command
    line prints as ``gannorm: error: ...``) says which and what to do."""


# ------------------------------------------------------------------------------------------ collectives
@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn the backend's error for a failed collective (a peer closed its connection, the timeout passed)
    into a one-line :class:`RankFailure` saying what probably happened."""
    try:
        yield
    except RankFailure:
        raise
    except RuntimeError as err:
        rank, world, first = failed_collective(err)
        raise RankFailure(f"rank {rank} of {world}: {what} failed ({first}); another rank died or did not arrive "
                          f"within train.dist_timeout={_TIMEOUT:g} s; torchrun's report names the rank that "
                          "failed first") from err


class _AllReduceSum(torch.autograd.Function):
    """``sum`` over the ranks of a tensor, differentiable: the gradient of each rank's input is the sum of
    the gradients of every rank's output (each output is the sum of all inputs)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # noqa: ARG004
        out = tensor.clone(memory_format=torch.contiguous_format)
        with _collective("a BatchNorm statistic's sum"):
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ARG004
        return _AllReduceSum.apply(grad)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum over the ranks of ``tensor`` (a new tensor, differentiable); ``tensor`` itself in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _AllReduceSum.apply(tensor)


@dataclass(frozen=True)
class Ranks(RankPlace):
    """The ranks of a run and this process's place among them (``Ranks()``: a single process); rank 0
    (:attr:`main`) alone writes the run folder (checkpoints, logs, samples, evaluations)."""

    local_rank: int = 0
    timeout: float = DEFAULT_TIMEOUT

    @property
    def loss_scale(self) -> float:
        """Each rank's loss factor ``b / B = 1 / N``: the ranks' scaled shard means sum to the global mean."""
        return 1.0 / self.world

    # ---------------------------------------------------------------- shards
    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous rows ``rank * B/N : (rank + 1) * B/N`` of a global batch."""
        if not self.distributed:
            return batch
        b = self._shard_size(batch.shape[0])
        return batch[self.rank * b:(self.rank + 1) * b]

    def _shard_size(self, total: int) -> int:
        if total % self.world:
            raise ValueError(f"a global batch of {total} does not split over {self.world} ranks")
        return total // self.world

    @contextlib.contextmanager
    def shard_stream(self, rng: torch.Generator, total: int) -> Iterator[torch.Generator]:
        """A generator whose next ``b = total / N`` uniform draws are this rank's rows of ``total`` draws from
        ``rng``; afterwards ``rng`` stands where those ``total`` draws leave it (or unmoved if nothing was drawn).

        For code that draws one uniform per sample of the batch it is given (the interpolation weights of a
        gradient penalty): on each rank it sees the shard and draws ``b`` numbers, which are the rows a single
        process drawing ``total`` gets for that shard. It rests on torch's CPU generator producing float32
        uniforms one 32-bit draw per element, in order; the draws are checked to be exactly ``b`` and anything
        else is a one-line error (an unpredictable consumer cannot be sharded this way).
        """
        if not self.distributed:
            yield rng
            return
        b = self._shard_size(total)
        start = rng.get_state()
        mine = _advanced(start, self.rank * b)
        before = mine.get_state()
        yield mine
        after = mine.get_state()
        if torch.equal(after, before):
            return  # nothing was drawn: the shared stream stays where it was, as in one process
        if not torch.equal(after, _advanced(before, b).get_state()):
            raise RankFailure(f"a gradient penalty drew other than one uniform per sample ({b} for this rank's "
                              f"shard of {total}); it cannot be split over {self.world} ranks; train on one process "
                              "or use a penalty without random interpolation (r1, r2)")
        rng.set_state(_advanced(start, total).get_state())

    # ---------------------------------------------------------------- collectives
    def sum(self, tensor: Tensor) -> Tensor:
        """The sum over the ranks (a new tensor, no gradient); ``tensor`` itself in one process."""
        if not self.distributed:
            return tensor
        out = tensor.detach().clone(memory_format=torch.contiguous_format)
        with _collective("a sum over the ranks"):
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def mean(self, tensor: Tensor) -> Tensor:
        """The mean over the ranks: of equal shards' means, the global batch's mean."""
        return tensor if not self.distributed else self.sum(tensor) / self.world

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (every rank gets the same answer)."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=self.comm_device())) > 0)

    def sum_grads(self, params: Sequence[Tensor]) -> None:
        """Sum the parameters' gradients over the ranks, in place (one flat all-reduce)."""
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        with _collective("the gradient sum"):
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for g, summed in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(summed)

    def first(self, value: T | None) -> T | None:
        """The first non-None ``value`` in rank order (e.g. the name of a non-finite gradient), on every rank."""
        if not self.distributed:
            return value
        values: list[Any] = [None] * self.world
        with _collective("an exchange of messages"):
            dist.all_gather_object(values, value)
        return next((v for v in values if v is not None), None)

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, its result (or its one-line error) on every rank: e.g. a new run folder's path."""
        if not self.distributed:
            return make()
        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("ok", make())
            except GannormError as err:
                box[0] = ("error", str(err))
                self._broadcast(box)
                raise
            except BaseException as err:
                box[0] = ("error", f"rank 0 failed: {type(err).__name__}: {err}")
                self._broadcast(box)
                raise
        self._broadcast(box)
        kind, value = box[0]
        if kind == "error" and not self.main:
            raise GannormError(value)
        return value

    def _broadcast(self, box: list[Any]) -> None:
        with _collective("rank 0's message"):
            dist.broadcast_object_list(box, src=0)

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written the last checkpoint)."""
        if self.distributed:
            with _collective("the final barrier"):
                dist.barrier()

    def check_agree(self, state: dict[str, Any], step: int) -> int:
        """Check that every rank holds ``state`` bitwise (a digest of each tensor); returns the tensors compared.

        Rank 0 writes the checkpoint for all ranks, so they must not have drifted apart: a rank that differs
        is a :class:`RankFailure` naming the first differing entry.
        """
        digests = dict(_digests(state))
        if not self.distributed:
            return len(digests)
        gathered: list[Any] = [None] * self.world
        with _collective("the check that the ranks agree"):
            dist.all_gather_object(gathered, digests)
        bad = disagreement(gathered)
        if bad is not None:
            rank, name = bad
            raise RankFailure(f"after G step {step}, rank {rank} holds a different {name} than rank 0: the ranks "
                              "drifted apart, so rank 0's checkpoint does not stand for them all; this is a bug "
                              "in gannorm's distributed training (or a nondeterministic kernel): please report it")
        return len(digests)


def _advanced(state: Tensor, draws: int) -> torch.Generator:
    """A new CPU generator at ``state`` moved on by ``draws`` float32 uniforms."""
    gen = torch.Generator()
    gen.set_state(state)
    if draws:
        torch.rand(draws, generator=gen)
    return gen


def _digests(obj: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(name, digest)`` of every tensor and plain value in a nested state (dicts, lists, tuples)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _digests(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _digests(value, f"{prefix}.{i}")
    elif isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        yield prefix, hashlib.blake2b(data + f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=16).hexdigest()
    else:
        yield prefix, repr(obj)


def disagreement(digests: Sequence[dict[str, str]]) -> tuple[int, str] | None:
    """The first ``(rank, name)`` whose digest differs from rank 0's (or that rank 0 lacks), or None."""
    reference = digests[0]
    for rank, mine in enumerate(digests[1:], start=1):
        for name in dict.fromkeys([*reference, *mine]):
            if reference.get(name) != mine.get(name):
                return rank, name
    return None


# ------------------------------------------------------------------------------------------ setup
def ranks_from_env(timeout: float = DEFAULT_TIMEOUT) -> Ranks:
    """The ranks torchrun describes in ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (absent: one process)."""
    values = {}
    for key, default in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)):
        text = os.environ.get(key, "")
        try:
            values[key] = int(text) if text.strip() else default
        except ValueError:
            raise GannormError(f"environment variable {key}={text!r} is not a whole number; start the ranks with "
                               "torchrun, which sets it") from None
    world, rank, local = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise GannormError(f"environment: RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={world}; start "
                           "the ranks with torchrun, which sets them")
    if not timeout > 0:
        raise ConfigError(f"config key train.dist_timeout: must be > 0 seconds, got {timeout}")
    return Ranks(world, rank, local, float(timeout))


def check_supported(cfg: Config, world: int) -> None:
    """Refuse what ``world`` ranks cannot train as one process does (one-line :class:`ConfigError`): a global
    batch size that does not split into equal shards, or a discriminator normalized with batch statistics
    (each rank would take them over its shard, not over the global batch)."""
    if world == 1:
        return
    for key in BATCH_KEYS:
        size = getattr(cfg.train, key)
        if size % world:
            lower = max(world, size - size % world)
            raise ConfigError(f"config key train.{key}: {size} is the global batch, split over {world} ranks; it "
                              f"must be a multiple of {world} (e.g. train.{key}={lower})")
    method = cfg.normalization.method
    if METHODS.get(method).couples_samples:
        raise ConfigError(f"config key normalization.method: {method} normalizes D's layers with batch statistics, "
                          f"which {world} ranks would take over their shards, not over the global batch; train it "
                          "in one process, or use a per-sample method (sn, bssn, ...)")


_CREATED = False  # whether setup() started the process group (and shutdown() ends it)
_TIMEOUT = DEFAULT_TIMEOUT  # the process group's timeout, for the messages of failed collectives


def setup(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group of ``ranks`` (if not joined yet) and return this rank's device.

    ``gloo`` on the CPU, ``nccl`` on CUDA with the GPU ``cuda:LOCAL_RANK``; a device naming one GPU
    (``cuda:1``) cannot be every rank's and is refused. One process returns ``device`` unchanged.
    """
    global _CREATED, _TIMEOUT
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(f"config key train.device: {device} names one GPU, but torchrun started {ranks.world} "
                              "ranks, one GPU each (cuda:LOCAL_RANK); set train.device=cuda or auto")
        if ranks.local_rank >= torch.cuda.device_count():
            raise GannormError(f"torchrun started rank {ranks.rank} as LOCAL_RANK {ranks.local_rank}, but this "
                               f"machine has {torch.cuda.device_count()} GPU(s); start at most that many ranks per "
                               "machine (--nproc_per_node)")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"config key train.device: distributed training runs on cpu (gloo) or cuda (nccl), not "
                          f"{device.type}")
    if dist.is_initialized():
        if dist.get_world_size() != ranks.world:
            raise GannormError(f"the process group has {dist.get_world_size()} ranks, but WORLD_SIZE={ranks.world}")
        return device
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=ranks.timeout))
    _CREATED, _TIMEOUT = True, ranks.timeout
    atexit.register(shutdown)
    return device


def shutdown() -> None:
    """End the process group :func:`setup` started (nothing if it started none)."""
    global _CREATED
    if _CREATED and dist.is_initialized():
        dist.destroy_process_group()
    _CREATED = False


# ------------------------------------------------------------------------------------------ sync BatchNorm
class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch: while :attr:`synced` (the trainer's steps), the per-channel sum and
    centred sum of squares are summed over the ranks (a differentiable all-reduce), so each rank normalizes
    its shard with the global batch's mean and biased variance and updates its running statistics with the
    global mean and the unbiased variance of the global count, as ``nn.BatchNorm`` does on the whole batch
    in one process. Otherwise (sampling, evaluation, probes on rank 0, eval mode) it is ``nn.BatchNorm``.

    Torch's ``nn.SyncBatchNorm`` refuses CPU tensors; this one runs on any device and any ``[N, C, ...]``
    input. Its state-dict keys are BatchNorm's (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``).
    """

    synced: bool = False

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of shape [N, C, ...], got {x.dim()} dimensions")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.synced and self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *([1] * (x.dim() - 2))]
        xf = x.float()
        local_count = xf.new_tensor([x.numel() / x.shape[1]])
        sums = all_reduce_sum(torch.cat([xf.sum(dims), local_count]))
        count = sums[-1].detach()  # the global number of values per channel
        mean = sums[:-1] / count
        centred = xf - mean.view(shape)
        var = all_reduce_sum(centred.square().sum(dims)) / count
        self._update_running(mean.detach(), var.detach(), float(count))
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: float) -> None:
        """BatchNorm's running update: the momentum (or the cumulative average when it is None)."""
        if count <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got {count:g}")
        if not self.track_running_stats:
            return
        assert self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean), alpha=factor)
        self.running_var.mul_(1 - factor).add_((var * count / (count - 1)).to(self.running_var), alpha=factor)


def sync_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer replaced by a :class:`SyncBatchNorm` holding the same parameters
    and buffers (the very tensors, so the state-dict keys and values stay)."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncBatchNorm):
            setattr(model, name, _converted(child))
        else:
            sync_batch_norm(child)
    return model


def _converted(bn: nn.modules.batchnorm._BatchNorm) -> SyncBatchNorm:
    new = SyncBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                        device="meta")
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        setattr(new, name, getattr(bn, name))
    new.train(bn.training)
    return new


@contextlib.contextmanager
def synced(model: nn.Module, on: bool = True) -> Iterator[None]:
    """Within the block, ``model``'s :class:`SyncBatchNorm` layers use the global batch's statistics."""
    layers = [m for m in model.modules() if isinstance(m, SyncBatchNorm)]
    if not on or not layers:
        yield
        return
    for m in layers:
        m.synced = True
    try:
        yield
    finally:
        for m in layers:
            m.synced = False

