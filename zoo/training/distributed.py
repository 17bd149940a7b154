"""Data-parallel training over several processes or machines, handed to torch.distributed.

A run is started by torch.distributed's own launcher (`launch`, which runs `torch.distributed.run`, the module
behind `torchrun`), or by anything that sets what torchrun sets (a SLURM or Kubernetes job, torchrun itself):
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Each process then runs the ordinary train entry,
which finds its place in `World.from_env()`, joins the process group (gloo on CPU, nccl on CUDA) and trains
its shard of every batch under DistributedDataParallel; rank 0 alone evaluates and publishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from zoo.core.errors import Call, DistributedRunError, Setting, ZooError
from zoo.store.atomic import replace_file

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure


@dataclass(frozen=True)
class World:
    """This process's place in a run: its global rank, the number of processes, its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """The world torchrun, SLURM or Kubernetes described in RANK, WORLD_SIZE and LOCAL_RANK; one process
        without them."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        """Whether this process evaluates, publishes and reports (rank 0)."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor, loss_reduction: str = "mean") -> tuple[torch.Tensor, float]:
        """This rank's contiguous part of a global batch of indices, and the weight its loss takes.

        DDP averages gradients over ranks. A mean-reduced loss over b of the batch's B items, weighted by
        size * b / B, makes that average the gradient of the whole batch's mean even when B does not divide
        evenly (the parts differ by at most one item); a summed loss is weighted by size.
        """
        part = torch.tensor_split(batch, self.size)[self.rank]
        if self.size == 1:
            return part, 1.0
        return part, float(self.size) * (len(part) / len(batch) if loss_reduction == "mean" else 1.0)


def current_world() -> World:
    """The world of the process group this process has joined; a single process when it has joined none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def backend_for(device: torch.device) -> str:
    """The collective backend for a device: nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device this rank trains on: on CUDA, the GPU numbered by its local rank."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[str | None]:
    """Join the run's process group for the block (yields its backend; None for a single process), then leave it."""
    if world.size <= 1:
        yield None
        return
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, rank=world.rank, world_size=world.size, device_id=device if device.type == "cuda" else None
    )
    try:
        yield backend
    finally:
        dist.destroy_process_group()


def data_parallel(model: nn.Module) -> nn.Module:
    """The module wrapped in DistributedDataParallel inside a process group of several ranks, else itself."""
    if current_world().size <= 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def all_ranks_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of `value` over every rank (itself for a single process)."""
    if current_world().size <= 1:
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def all_ranks_reached() -> None:
    """Wait until every rank gets here; a rank that died makes this fail instead, so nothing is published."""
    if current_world().size > 1:
        dist.barrier()


def from_main_rank(value: Any) -> Any:
    """Rank 0's `value`, on every rank."""
    if current_world().size <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def record_failure(error: BaseException) -> None:
    """Write a zoo error of this rank where torch.distributed's launcher reads it (TORCHELASTIC_ERROR_FILE), so
    `launch` names this rank and its message as the run's cause; a no-op outside a launched run.

    The file is what torch's ErrorHandler.record_exception writes, with the error's settings beside the message:
    the message stays in Python's words, and the launching process's front end spells it once (ZooError.spelled)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if isinstance(error, ZooError) and path:
        extra = {"py_callstack": traceback.format_exc(), "timestamp": str(int(time.time())),
                 _SETTINGS_KEY: [dataclasses.asdict(fix) for fix in error.settings]}
        text = json.dumps({"message": {"message": f"{type(error).__name__}: {error}", "extraInfo": extra}})
        replace_file(Path(path), lambda handle: handle.write(text.encode("utf-8")))


_SETTINGS_KEY = "zoo_settings"


def recorded_settings(failure: ProcessFailure) -> tuple[Setting | Call, ...]:
    """The settings of the error a failed rank recorded (record_failure); none for another failure."""
    message = failure.message if recorded(failure) else None
    extra: dict[str, Any] = message.get("extraInfo", {}) if isinstance(message, dict) else {}

    def setting(data: dict[str, Any]) -> Setting:
        return Setting(data["parameter"], data["value"])

    return tuple(Call(data["function"], data["ref"], tuple(map(setting, data["settings"]))) if "function" in data
                 else setting(data) for data in extra.get(_SETTINGS_KEY, []))


@dataclass(frozen=True)
class Topology:
    """Where a launched run's processes go: per machine, how many machines, this machine's rank, the rendezvous."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def torchrun_args(self) -> list[str]:
        """The torchrun options that start this topology (no rendezvous options: a free local port on one machine)."""
        args = [
            f"--nproc-per-node={self.nproc_per_node}",
            f"--nnodes={self.nnodes}",
            f"--node-rank={self.node_rank}",
            "--max-restarts=0",
        ]
        if self.master_addr is not None:
            args.append(f"--master-addr={self.master_addr}")
        if self.master_port is not None:
            args.append(f"--master-port={self.master_port}")
        return args


# A rank started as `python -m` has the current folder first on its import path, so a zoo.py or torch.py there
# would be imported instead of the zoo or torch. Python 3.11+ has -P for that; 3.10 drops the entry itself.
_WITHOUT_CURRENT_FOLDER = (
    "import runpy, sys\n"
    "if sys.path and sys.path[0] in ('', '.'):\n"
    "    del sys.path[0]\n"
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)\n"
)


def rank_command(module: str, args: Sequence[str], has_safe_path: bool = sys.version_info >= (3, 11)) -> list[str]:
    """The command line of one rank: `python -m module *args` (unbuffered) without the current folder on the
    import path (`-P` where the interpreter has it); torchrun's PYTHON_EXEC names the interpreter, as for its own."""
    python = os.environ.get("PYTHON_EXEC", sys.executable)
    if has_safe_path:
        return [python, "-u", "-P", "-m", module, *args]
    return [python, "-u", "-c", _WITHOUT_CURRENT_FOLDER, module, *args]


def launch(topology: Topology, module: str, args: Sequence[str]) -> None:
    """Run `python -m module *args` on every rank of `topology` through torch.distributed.run (torchrun), with the
    current folder off the ranks' import path (rank_command).

    Returns when every local rank has exited 0; otherwise raises DistributedRunError naming the first rank that
    failed and its error (the others are stopped by the launcher).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # --no-python: torchrun runs the command as given instead of `python -u -m module`, which has no room for -P.
    argv = [*topology.torchrun_args(), "--no-python", *rank_command(module, args)]
    try:
        run(parse_args(argv))
    except ChildFailedError as error:
        rank, failure = root_cause(error.failures)
        raise DistributedRunError(
            f"rank {rank} of {topology.world_size} failed: {describe(failure)}; no version was published",
            settings=recorded_settings(failure),
        ) from None


def root_cause(failures: dict[int, ProcessFailure]) -> tuple[int, ProcessFailure]:
    """The failure that started it: a rank that recorded its error, else one killed by a signal, else one that
    crashed, and last one the launcher stopped (SIGTERM); the earliest and lowest rank of a kind.

    When one rank dies its peers fail too: in their next collective (recording nothing), or stopped by the
    launcher's SIGTERM, often within the same second, so those never outrank the cause.
    """

    def rank_of(item: tuple[int, ProcessFailure]) -> tuple[int, int, int]:
        rank, failure = item
        if recorded(failure):
            kind = 0
        elif failure.exitcode < 0:
            kind = 3 if -failure.exitcode == signal.SIGTERM else 1
        else:
            kind = 2
        return kind, failure.timestamp, rank

    return min(failures.items(), key=rank_of)


def recorded(failure: ProcessFailure) -> bool:
    """Whether the rank wrote its error file (record_failure) before it exited."""
    return os.path.isfile(failure.error_file)


def describe(failure: ProcessFailure) -> str:
    """A failed rank in one line: its recorded error, the signal that killed it, or its exit code."""
    if recorded(failure):
        message = failure.message
        return message.get("message", str(message)) if isinstance(message, dict) else str(message)
    if failure.exitcode < 0:
        return f"killed by signal {-failure.exitcode} ({failure.signal_name()}), pid {failure.pid}"
    return f"exit code {failure.exitcode} (its error is in its output above)"
