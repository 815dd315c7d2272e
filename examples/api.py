"""The Python API: evaluate a checkpoint folder and a loaded model, show the table, get a DataFrame.

Runs offline in seconds: it builds the small, untrained demo dual encoder (a ViT + a BERT,
`vtde_bench.demo.build_demo_model`) and evaluates it on the first rows of the two built-in
`shapes` tasks. An untrained model scores near chance; swap in your own checkpoint folder
or hub id to evaluate a real one.

    python examples/api.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import rich
import transformers

import vtde_bench
from vtde_bench.demo import build_demo_model

TASKS = ["shapes-classification", "shapes-retrieval"]  # registry names; group names and .toml card paths work too


def main() -> None:
    transformers.logging.disable_progress_bar()
    model, processor = build_demo_model(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        # 1. A checkpoint folder (what `vtde-bench run --model FOLDER` takes). Keyword arguments are
        #    RunOptions fields; results are written as the CLI writes them: <output_dir>/<model>/<task>.json.
        folder = Path(tmp) / "demo-checkpoint"
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        # (cache=False: an example should not fill your embedding cache; leave it on in real use.)
        results = vtde_bench.evaluate(str(folder), TASKS, output_dir=Path(tmp) / "results", limit=100, workers=0, cache=False)
        rich.print(results)  # the CLI's table
        for task, path in results.paths.items():
            print(f"{task}: wrote {path.relative_to(tmp)}")

        # 2. A loaded transformers model with its processor: the same numbers, nothing written.
        options = vtde_bench.RunOptions(output_dir=None, limit=100, workers=0, cache=False)
        in_memory = vtde_bench.evaluate(model, TASKS, processor=processor, options=options)
        for task in TASKS:
            assert in_memory[task].metrics == results[task].metrics
            print(f"{task}: main score {in_memory[task].main_score:.4f} ({in_memory[task].task.main_metric})")

        # 3. A DataFrame: one row per (model, task, metric), values as fractions (the columns of load_results:
        #    intervals, fingerprints, source, ...; a few of them here).
        frame = results.to_dataframe()
        print(frame[["model", "task", "metric", "value", "main"]].to_string(index=False))


if __name__ == "__main__":
    main()
