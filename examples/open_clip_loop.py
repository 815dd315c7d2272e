"""Zero-shot scores every N steps of an open_clip training loop, with `vtde_bench.evaluate`.

Pass the model object with `processor=(preprocess, tokenizer)`: open_clip's eval transform and its tokenizer,
as `open_clip.create_model_and_transforms` and `open_clip.get_tokenizer` give them. vtde-bench embeds with
`model.encode_image(preprocess(image))` and `model.encode_text(tokenizer(texts))`, as open_clip's own
evaluation does. As in custom_loop.py, nothing is written, the cache and the bootstrap are off, and the
model goes back to training mode after each evaluation.

Runs offline in seconds (needs `pip install "vtde-bench[open_clip]"`): a tiny open_clip CLIP built from a
config (random weights: the scores show the mechanics, not a trained model), trained for a few steps on the
built-in shapes training set with open_clip's own contrastive loss.

    python examples/open_clip_loop.py
"""

from __future__ import annotations

import io

import open_clip
import pyarrow.parquet as pq
import torch
from PIL import Image

import vtde_bench
from vtde_bench.demo import default_train_parquet

TASKS = ["shapes-classification", "shapes-retrieval"]
STEPS, EVERY, BATCH = 6, 3, 16
CONFIG = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
          "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def main() -> None:
    torch.manual_seed(0)
    # A made-up architecture; for a real one: open_clip.create_model_and_transforms("ViT-B-32", pretrained=...).
    model = open_clip.CLIP(**CONFIG)
    preprocess = open_clip.image_transform(CONFIG["vision_cfg"]["image_size"], is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=CONFIG["text_cfg"]["context_length"])  # CLIP's BPE
    table = pq.read_table(default_train_parquet(), columns=["image", "captions"]).slice(0, 96).to_pydict()
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(cell["bytes"]))) for cell in table["image"]])
    tokens = tokenizer([texts[0] for texts in table["captions"]])
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    options = vtde_bench.RunOptions(output_dir=None, cache=False, bootstrap=0, limit=100, workers=0, device="cpu")

    model.train()
    for step in range(1, STEPS + 1):
        rows = torch.randperm(len(pixels))[:BATCH]
        image, text, scale = model(pixels[rows], tokens[rows])[:3]
        loss = loss_fn(image, text, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % EVERY == 0:
            try:
                results = vtde_bench.evaluate(model, TASKS, processor=(preprocess, tokenizer), options=options)
            finally:
                model.train()
            scores = "  ".join(f"{r.task_name} {r.task.main_metric} = {r.main_score:.4f}" for r in results)
            print(f"step {step}: loss {loss.item():.3f}  {scores}")
    print(f"preprocessing: {results['shapes-classification'].run.profile.images['path']}")


if __name__ == "__main__":
    main()
