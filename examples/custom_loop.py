"""Zero-shot scores every N steps of your own training loop, with `vtde_bench.evaluate`.

The model is evaluated in place: `evaluate` puts it in eval mode and embeds without gradients;
put it back in training mode afterwards (the `finally` below), since `evaluate` does not know
how you train. Nothing is written (`output_dir=None`); the embedding cache is off, since the
weights change at every step; and the bootstrap intervals are off, to keep evaluations quick.

With a locked tower (LiT), use `ZeroShotEvalCallback(tasks, processor=...).evaluate(model)`
from `vtde_bench.integrations` instead: it works outside a Trainer too, restores each module's
training mode itself, and runs the locked tower once instead of at every evaluation.

Runs offline in seconds: the small demo dual encoder (`vtde_bench.demo.build_demo_model`),
trained for a few steps on the built-in shapes training set, which shows the mechanics; a dozen
steps from scratch barely move the scores (`vtde-bench demo` trains it properly, in a minute).

    python examples/custom_loop.py
"""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import torch
import transformers
from PIL import Image

import vtde_bench
from vtde_bench.demo import build_demo_model, default_train_parquet

TASKS = ["shapes-classification", "shapes-retrieval"]
STEPS, EVERY, BATCH = 12, 4, 16


def training_batches(processor, n: int = 192):
    """Endless shuffled batches of (images, first captions) from the shapes training set, preprocessed once."""
    table = pq.read_table(default_train_parquet(), columns=["image", "captions"]).slice(0, n).to_pydict()
    images = [Image.open(io.BytesIO(cell["bytes"])).convert("RGB") for cell in table["image"]]
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = processor.tokenizer([texts[0] for texts in table["captions"]], padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(0)
    while True:
        for rows in torch.randperm(n, generator=generator).split(BATCH):
            yield {"pixel_values": pixels[rows], **{k: v[rows] for k, v in tokens.items()}}


def main() -> None:
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model, processor = build_demo_model(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # device: where the model trains ("auto" would move a model trained on the CPU to a GPU, under its optimizer).
    options = vtde_bench.RunOptions(output_dir=None, cache=False, bootstrap=0, limit=100, workers=0, device="cpu")

    model.train()
    batches = training_batches(processor)
    for step in range(1, STEPS + 1):
        loss = model(**next(batches), return_loss=True).loss  # the symmetric CLIP loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        if step % EVERY == 0:
            try:
                results = vtde_bench.evaluate(model, TASKS, processor=processor, options=options)
            finally:
                model.train()
            scores = "  ".join(f"{r.task_name} {r.task.main_metric} = {r.main_score:.4f}" for r in results)
            print(f"step {step}: loss {loss.item():.3f}  {scores}")
    print(results.to_dataframe()[["task", "metric", "value", "main"]].to_string(index=False))


if __name__ == "__main__":
    main()
