"""Zero-shot scores while `transformers.Trainer` trains a dual encoder, LiT-style (image tower locked).

`ZeroShotEvalCallback` evaluates the model being trained every N steps and logs each task's
main score as `eval_zeroshot_<task>_<metric>` (in `trainer.state.log_history`, and through
`report_to` integrations when it is given `trainer=`). Because the image tower is locked
(every parameter has requires_grad=False), its outputs are computed once, at the first
evaluation, and reused: later evaluations run only the image projection and the text side.

Runs offline in seconds: the small demo dual encoder (`vtde_bench.demo.build_demo_model`),
trained for a few steps on the built-in shapes training set, which shows the mechanics; a dozen
steps on an untrained tower barely move the scores. In real LiT training the locked tower is a
pretrained one, e.g.
`VisionTextDualEncoderModel.from_vision_text_pretrained("google/vit-base-patch16-224", "bert-base-uncased")`.

    python examples/trainer_callback.py
"""

from __future__ import annotations

import io
import tempfile

import pyarrow.parquet as pq
import torch
import transformers
from PIL import Image
from transformers import Trainer, TrainingArguments, default_data_collator

from vtde_bench import RunOptions
from vtde_bench.demo import build_demo_model, default_train_parquet
from vtde_bench.integrations import ZeroShotEvalCallback

TASKS = ["shapes-classification", "shapes-retrieval"]


class ShapePairs(torch.utils.data.Dataset):
    """The first `n` training images of the shapes set, each with its first caption, preprocessed once."""

    def __init__(self, processor, n: int = 192):
        table = pq.read_table(default_train_parquet(), columns=["image", "captions"]).slice(0, n).to_pydict()
        images = [Image.open(io.BytesIO(cell["bytes"])).convert("RGB") for cell in table["image"]]
        self.pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        captions = [texts[0] for texts in table["captions"]]
        self.tokens = processor.tokenizer(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt")

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[i], "input_ids": self.tokens["input_ids"][i],
                "attention_mask": self.tokens["attention_mask"][i]}


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, object]:
    return {**default_data_collator(rows), "return_loss": True}  # the model computes its own CLIP loss


def main() -> None:
    transformers.logging.set_verbosity_error()
    model, processor = build_demo_model(seed=0)
    model.vision_model.requires_grad_(False)  # LiT: lock the image tower; its projection and the text side learn

    zeroshot = ZeroShotEvalCallback(
        TASKS,
        processor=processor,
        every_n_steps=4,
        # The callback's default writes nothing and skips the cache and the bootstrap intervals;
        # here also only the first 100 rows of each task, to keep the example fast.
        options=RunOptions(output_dir=None, cache=False, bootstrap=0, limit=100, workers=0),
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=12, per_device_train_batch_size=16, learning_rate=2e-3, warmup_steps=2,
            logging_steps=4, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=ShapePairs(processor), data_collator=collate,
                          callbacks=[zeroshot])
        trainer.train()

    print(f"locked towers reused: {', '.join(zeroshot.encoder.locked)}")
    for entry in trainer.state.log_history:
        scores = {k: v for k, v in entry.items() if k.startswith("eval_zeroshot_")}
        if scores:
            print(f"step {entry['step']}: " + "  ".join(f"{k} = {v:.4f}" for k, v in scores.items()))
    print(f"model back in training mode: {model.training}")


if __name__ == "__main__":
    main()
