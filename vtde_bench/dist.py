"""torchrun: joining its process group, and this process's place among its ranks.

The command line joins the group (`init_distributed`); a program that calls the API under torchrun
calls it itself, before `evaluate`, which refuses to run a shard of the work alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vtde_bench.errors import UserError


def launched_world() -> int:
    """How many processes torchrun started (WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_distributed() -> None:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""
    import torch
    import torch.distributed as dist

    if launched_world() <= 1 or not dist.is_available() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


@dataclass(frozen=True)
class Shard:
    """This process's place among torchrun's ranks (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Shard":
        """The group this process has joined.

        Raises:
            UserError: torchrun started several processes, but this one has not joined their group.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        if launched_world() > 1:
            raise UserError(f"launched by torchrun (WORLD_SIZE={launched_world()}) but not in its process group: call "
                            "vtde_bench.init_distributed() before evaluate(), so the ranks share the work")
        return cls()

    def gather(self, items: list[Any]) -> list[Any]:
        """Everyone's items, on every rank."""
        if self.world == 1:
            return items
        import torch.distributed as dist

        everyone: list[Any] = [None] * self.world
        dist.all_gather_object(everyone, items)
        return [item for part in everyone for item in part]
