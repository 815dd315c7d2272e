"""Linear-probe cost: peak memory and time per L-BFGS iteration on synthetic ImageNet-sized features
(a script, not a test; issue #21 item 4).

    python scripts/probe_benchmark.py                        # 1,281,167 x 512 float32 features, 1,000 classes
    python scripts/probe_benchmark.py --rows 100000 --iterations 5 --device cuda

The features are made once (normal noise around class centres, normalised as embeddings are), then one fit at
lambda = 1 runs for a fixed number of L-BFGS iterations. Peak memory is the process's maximum resident set
(CPU) or torch's peak allocation (CUDA), beside the features' own size.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vtde_bench import probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_281_167)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.classes, (args.rows,), generator=generator)
    features = torch.empty(args.rows, args.dim)
    centres = torch.randn(args.classes, args.dim, generator=generator)
    for i in range(0, args.rows, 100_000):  # in place, block by block: no temporary the size of the matrix
        block = features[i : i + 100_000]
        block.normal_(generator=generator).mul_(3).add_(centres[labels[i : i + 100_000]])
        block.div_(block.norm(dim=1, keepdim=True))
    features, labels = features.to(args.device), labels.to(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    head = probe.fit(features, labels, args.classes, 1.0, max_iter=args.iterations)
    seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(json.dumps({"rows": args.rows, "dim": args.dim, "classes": args.classes, "device": args.device,
                      "features_gb": features.numel() * 4 / 2**30, "peak_gb": round(peak, 3),
                      "peak_before_fit_gb": round(before, 3), "iterations": head.iterations,
                      "seconds_per_iteration": round(seconds / max(head.iterations, 1), 2)}, indent=2))


if __name__ == "__main__":
    main()
