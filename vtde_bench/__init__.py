"""vtde-bench: zero-shot classification and image-text retrieval for vision-text dual encoders.

The public API (imported lazily, so `import vtde_bench` stays cheap):

- `evaluate(model, tasks, options=RunOptions(...))` → `Results`
- `init_distributed()`: join torchrun's process group before `evaluate`, so that the ranks share the work
- `load_model(path)` → a dual encoder with `encode_images` / `encode_texts`
- `load_tasks(names)` → task specs
- `read_result(path)` → a `TaskResult`
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "evaluate": "vtde_bench.api",
    "RunOptions": "vtde_bench.options",
    "Results": "vtde_bench.api",
    "init_distributed": "vtde_bench.dist",
    "load_model": "vtde_bench.encoders",
    "load_tasks": "vtde_bench.tasks",
    "read_result": "vtde_bench.results",
    "load_results": "vtde_bench.results",
    "TaskResult": "vtde_bench.results",
    "UserError": "vtde_bench.errors",
    "RunFailure": "vtde_bench.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vtde_bench' has no attribute {name!r}")
