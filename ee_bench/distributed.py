"""Multi-process data parallelism on the field's own engine (accelerate / torch.distributed).

``accelerate launch -m ee_bench ...`` or ``torchrun --nproc_per_node N -m ee_bench ...`` starts N
processes; each evaluates a contiguous, deterministic shard of every task's documents
(``accelerate.PartialState.split_between_processes``), and rank 0 gathers the per-document records
(``torch.distributed.gather_object``), orders them by document id, and alone computes the
statistics, writes results and the leaderboard, and shows the progress bar. Because every
per-document record is computed independently of the others (with batch size 1, bit-identically),
the merged results equal a single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: 0-based process index; world_size: number of processes.
        device: the device accelerate assigned to this process (None in a single process: the
            user's ``--device`` or the default applies).
    """

    rank: int = 0
    world_size: int = 1
    device: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Single process unless launched by accelerate/torchrun (``WORLD_SIZE`` > 1)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        # Initialises torch.distributed: nccl on GPU; on a CPU-only machine accelerate needs cpu=True
        # to pick its MULTI_CPU mode (gloo, or mpi where available).
        state = PartialState(cpu=not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU") == "true")
        return cls(rank=state.process_index, world_size=state.num_processes, device=str(state.device))

    def shard(self, n_docs: int) -> list[int]:
        """Document indices this process evaluates (contiguous, balanced, deterministic)."""
        if self.world_size == 1:
            return list(range(n_docs))
        from accelerate import PartialState

        with PartialState().split_between_processes(list(range(n_docs))) as mine:
            return list(mine)

    def gather(self, items: list[Any]) -> list[Any] | None:
        """Concatenate every rank's ``items`` on rank 0 (in rank order); other ranks get None."""
        if self.world_size == 1:
            return items
        import torch.distributed as dist

        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(items, out, dst=0)
        if not self.is_main:
            return None
        return [x for part in out for x in part]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
