"""Process-group setup for one CPU, one GPU, or several ``torchrun`` processes.

``torchrun --nproc_per_node N -m hiu_cli.main train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`setup` then joins the group with NCCL when
CUDA is in use and gloo otherwise. Without those variables everything runs in one process and
the helpers here become no-ops, so the training loop has a single code path.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from hiu_data.errors import HiuError, ReportedElsewhere

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True in a ``torchrun`` group of more than one process."""
        return self.world_size > 1


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix multiplication in hardware); without them
    bf16 on the CPU is emulated and slower than float32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local GPU) when available, else CPU; or the named device."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        # The message names the value, not an option: it comes from --device of several
        # commands as well as from train.device of a config file.
        if not torch.cuda.is_available():
            raise HiuError(f"device {requested!r}: no CUDA device is available here; use 'cpu' or 'auto'")
        if requested == "cuda":
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise HiuError(f"device {requested!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise HiuError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                       f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def setup(device: str = "auto", timeout_s: float = 3600.0) -> DistInfo:
    """Join the ``torchrun`` process group if there is one; pick this process's device.

    The collective timeout is generous: the other ranks wait in a barrier while rank 0
    validates and saves checkpoints.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
        log.info("rank %d/%d joined the %s group on %s", rank, world_size, backend, target)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def teardown() -> None:
    """Leave the process group (no-op in a single process); after :func:`release_wrapper` where
    every process stops together."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def release_wrapper(wrapper: weakref.ReferenceType | None) -> None:
    """Make sure a ``DistributedDataParallel`` wrapper whose strong references the caller has
    dropped is gone (``wrapper``: a weak reference to it; None: there was none), so that
    :func:`teardown` destroys the process group through Python's own handle.

    A gloo group's last owner joins the group's worker threads, and a worker still freeing its
    last collective's tensors needs the GIL for them. Python's handle lets the GIL go while it
    waits; a DDP wrapper's reducer, freed after the group with the GIL held, would wait for
    ever: a process that never exits. A wrapper caught in a reference cycle is collected here.
    (Only where every process stops together: after an error the wrapper stays with the
    traceback, which keeps the group alive past :func:`teardown`; destroyed there, a group whose
    peer has gone can block before the error reaches the user.)
    """
    if wrapper is not None and wrapper() is not None:
        gc.collect()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def mean_across(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average a dict of floats over processes (for logging; keys must match on all ranks)."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                          device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    tensor /= info.world_size
    return dict(zip(keys, tensor.tolist()))


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every process."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: Any, info: DistInfo) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` in a single process."""
    if not info.distributed:
        return [value]
    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value)
    return values


@contextlib.contextmanager
def fail_together(info: DistInfo) -> Iterator[None]:
    """Run a block that every process runs without collectives; if it raises a user error
    (:class:`HiuError` or ``OSError``) on any process, every process raises: rank 0 its own
    error, or the first failing rank's message, and the others :class:`ReportedElsewhere`.

    Errors such as a missing data folder are met by all processes at once: printed by each, they
    would appear once per process; met by one (a folder missing on one node), the others would
    wait for it in their next collective. Other exceptions (bugs) pass through unchanged.
    """
    error: BaseException | None = None
    try:
        yield
    except (HiuError, OSError) as e:
        if not info.distributed:
            raise
        error = e
    if not info.distributed:
        return
    messages: list[str | None] = [None] * info.world_size
    dist.all_gather_object(messages, None if error is None else str(error))
    failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
    if not failed:
        return
    if not info.is_main:
        raise ReportedElsewhere(failed[0][1]) from None
    if error is not None:
        raise error
    rank, message = failed[0]
    raise HiuError(f"rank {rank}: {message}")


def share_failure(info: DistInfo, failure: BaseException | None) -> None:
    """After work that rank 0 did alone for all (``failure``: its error, None on success; ignored
    on the other ranks): rank 0 raises its error, the other ranks :class:`ReportedElsewhere`."""
    message = broadcast_object(None if failure is None else str(failure), info)
    if failure is not None and info.is_main:
        raise failure
    if message is not None:
        raise ReportedElsewhere(message)


PEER_GONE: tuple[str, ...] = ("Connection closed by peer", "Connection reset by peer")
"""What gloo's TCP transport says in a collective whose peer process has gone: it left the
group after an error of its own, or it was killed."""


@contextlib.contextmanager
def report_lost_peer(info: DistInfo) -> Iterator[None]:
    """Run a block of collectives; when one fails because another process of the group has
    gone (:data:`PEER_GONE`), rank 0 raises a one-line :class:`HiuError` and the others
    :class:`ReportedElsewhere`, from the collective's error.

    The process that left printed its own error (or torchrun's summary names its signal); the
    traceback of where this process waited for it says nothing more. Any other error, a
    collective's included, passes through unchanged.
    """
    try:
        yield
    except RuntimeError as e:
        if not info.distributed or not any(text in str(e) for text in PEER_GONE):
            raise
        message = ("another process of the torchrun group stopped, so this one did too: that process's "
                   "error, or torchrun's summary of the exit codes, says why")
        if info.is_main:
            raise HiuError(message) from e
        raise ReportedElsewhere(message) from e
