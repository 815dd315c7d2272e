"""`ZeroShotEvalCallback` in a real `transformers.Trainer`, and the locked-tower reuse behind it."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
    default_data_collator,
)

import helpers
from helpers import COLOUR_NAMES
from vtde_bench import RunOptions, UserError, evaluate
from vtde_bench.integrations import TrainingEncoder, ZeroShotEvalCallback

OPTIONS = RunOptions(output_dir=None, cache=False, bootstrap=0, workers=0, batch_size=8)


@pytest.fixture
def lit(tiny_vtde):
    """The tiny dual encoder with its image tower locked, as under LiT."""
    model = VisionTextDualEncoderModel.from_pretrained(tiny_vtde)
    model.vision_model.requires_grad_(False)
    return model, VisionTextDualEncoderProcessor.from_pretrained(tiny_vtde)


class Pairs(torch.utils.data.Dataset):
    """(pixel_values, input_ids, attention_mask) of fixture images and their captions."""

    def __init__(self, processor, colour_rows, caption_rows):
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b, _ in colour_rows + caption_rows]
        texts = [f"a photo of a {COLOUR_NAMES[y]}." for _, y in colour_rows] + [caps[0] for _, caps in caption_rows]
        self.pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        self.tokens = processor.tokenizer(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[i], "input_ids": self.tokens["input_ids"][i],
                "attention_mask": self.tokens["attention_mask"][i]}


def collate(rows):
    return {**default_data_collator(rows), "return_loss": True}  # the model's own CLIP loss


def make_trainer(model, dataset, tmp_path, callbacks, processing_class=None, **args) -> Trainer:
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, **args,
    )
    return Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=collate, callbacks=callbacks,
                   processing_class=processing_class)


class Watch(TrainerCallback):
    """Runs after the callback at the same steps: counts tower work, checks modes, compares with a plain evaluate."""

    def __init__(self, model, processor, cards, zeroshot):
        self.model, self.processor, self.cards, self.zeroshot = model, processor, cards, zeroshot
        self.counting = True
        self.tower_rows: list[str] = []  # digest of each image row the locked tower embedded while evaluating
        self.projection_calls = 0
        self.per_eval: list[tuple[int, int, bool]] = []  # (new tower rows, projection calls, all modules training)
        self.plain: list[dict] = []
        model.vision_model.register_forward_pre_hook(self._tower, with_kwargs=True)
        model.visual_projection.register_forward_hook(self._projection)

    def _tower(self, module, args, kwargs):
        if self.counting and not module.training:  # the Trainer's own forward passes run in training mode
            pixels = kwargs.get("pixel_values", args[0] if args else None)
            self.tower_rows += [hashlib.sha256(row.numpy().tobytes()).hexdigest() for row in pixels]

    def _projection(self, module, args, output):
        if self.counting and not module.training:
            self.projection_calls += 1

    def on_step_end(self, args, state, control, **kwargs):
        if not self.zeroshot.history or self.zeroshot.history[-1][0] != state.global_step:
            return
        seen = sum(n for n, _, _ in self.per_eval)
        self.per_eval.append((len(self.tower_rows) - seen, self.projection_calls, all(m.training for m in self.model.modules())))
        self.projection_calls = 0
        self.counting = False
        try:  # the reference: a plain evaluate of the same weights, now
            plain = evaluate(self.model, self.cards, processor=self.processor, options=OPTIONS)
        finally:
            self.model.train()
            self.counting = True
        for ours, theirs in zip(self.zeroshot.results, plain):
            assert ours.metrics == pytest.approx(theirs.metrics, abs=1e-9)
            assert ours.model.weights_fingerprint == theirs.model.weights_fingerprint
            pd.testing.assert_frame_equal(ours.samples, theirs.samples)
        self.plain.append({r.task_name: r.model.weights_fingerprint for r in plain})


def test_callback_logs_scores_and_runs_the_locked_tower_once(lit, cards, tmp_path, colour_rows, caption_rows):
    model, processor = lit
    zeroshot = ZeroShotEvalCallback(cards, processor=processor, every_n_steps=2, options=OPTIONS)
    watch = Watch(model, processor, cards, zeroshot)
    trainer = make_trainer(model, Pairs(processor, colour_rows, caption_rows), tmp_path, [zeroshot, watch])
    trainer.train()

    logged = [e for e in trainer.state.log_history if any(k.startswith("eval_zeroshot_") for k in e)]
    assert [e["step"] for e in logged] == [2, 4, 6]
    assert all(set(e) >= {"eval_zeroshot_colours_acc1", "eval_zeroshot_captions_mean_recall@1"} for e in logged)
    assert all(0.0 <= e["eval_zeroshot_colours_acc1"] <= 1.0 for e in logged)
    assert [s for _, s in zeroshot.history] == [{k: v for k, v in e.items() if k.startswith("eval_")} for e in logged]

    # The tower ran once for each distinct image (and the adapter's one probe image), at the first
    # evaluation only; the projection ran at every evaluation; training mode was back every time.
    assert len(watch.tower_rows) == len(set(watch.tower_rows)) == len(colour_rows) + len(caption_rows) + 1
    assert [new for new, _, _ in watch.per_eval] == [len(colour_rows) + len(caption_rows) + 1, 0, 0]
    assert all(calls > 0 for _, calls, _ in watch.per_eval)
    assert all(training for _, _, training in watch.per_eval)
    # The projection learned between evaluations, so the reuse was tested on changing weights.
    assert len({fp["colours"] for fp in watch.plain}) == 3


def test_trainer_reference_and_on_evaluate(lit, cards, tmp_path, colour_rows, caption_rows):
    """With trainer=, scores go through Trainer.log; with on_evaluate, into trainer.evaluate()'s metrics."""
    model, processor = lit
    dataset = Pairs(processor, colour_rows, caption_rows)
    trainer = make_trainer(model, dataset, tmp_path, [], processing_class=processor)  # processor= defaults to it
    zeroshot = ZeroShotEvalCallback(cards[:1], every_n_steps=None, on_evaluate=True, options=OPTIONS, trainer=trainer)
    trainer.add_callback(zeroshot)
    metrics = trainer.evaluate(dataset)
    assert "eval_loss" in metrics and 0.0 <= metrics["eval_zeroshot_colours_acc1"] <= 1.0
    assert trainer.state.log_history[-1]["eval_zeroshot_colours_acc1"] == metrics["eval_zeroshot_colours_acc1"]


def test_modes_restored_exactly_even_on_error(lit, tmp_path, colour_rows, caption_rows):
    model, processor = lit
    cards = [str(c) for c in helpers.write_colour_cards(tmp_path, colour_rows, caption_rows, COLOUR_NAMES)]  # it breaks them
    model.train()
    model.vision_model.eval()  # a locked tower kept in eval mode by the user stays so
    modes = {name: m.training for name, m in model.named_modules()}
    zeroshot = ZeroShotEvalCallback(cards[:1], processor=processor, options=OPTIONS)
    zeroshot.evaluate(model)
    assert {name: m.training for name, m in model.named_modules()} == modes
    (tmp_path / "data" / "colours" / "test-00000-of-00001.parquet").unlink()  # the next evaluation fails while loading data
    with pytest.raises(UserError):
        zeroshot.evaluate(model)
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_changed_tower_weights_or_images_are_never_served_stale(lit):
    model, processor = lit
    encoder = TrainingEncoder(model, processor)
    assert encoder.locked == ("images",)
    images = [helpers.colour_image(c, seed=i) for i, c in enumerate(COLOUR_NAMES)]
    first = encoder.encode_images(images)
    with torch.no_grad():  # through .data: no version counter notices, only the weights' hash does
        model.vision_model.embeddings.patch_embeddings.projection.weight.data.mul_(1.5)
    encoder.refresh()
    plain = evaluate_images(model, processor, images)
    assert not torch.allclose(first, plain)
    assert torch.equal(encoder.encode_images(images), plain)
    other = [helpers.colour_image(c, seed=100 + i) for i, c in enumerate(COLOUR_NAMES)]
    assert torch.equal(encoder.encode_images(other), evaluate_images(model, processor, other))
    model.vision_model.requires_grad_(True)  # unlocked: no reuse at all
    encoder.refresh()
    assert encoder.locked == ()


def evaluate_images(model, processor, images):
    from vtde_bench.encoders import HFDualEncoder, ModelInfo

    return HFDualEncoder(model, processor, info=ModelInfo(path="plain")).encode_images(images)


def test_reuse_with_input_worker_processes(lit, cards):
    """With workers, preprocessing (and the row digests) happens in other processes: the reuse still holds."""
    model, processor = lit
    rows = []
    model.vision_model.register_forward_hook(lambda m, args, out: rows.append(len(out.pooler_output)))
    zeroshot = ZeroShotEvalCallback(cards[:1], processor=processor, options=RunOptions(output_dir=None, cache=False, bootstrap=0, workers=2, batch_size=8))
    first = zeroshot.evaluate(model)
    computed = sum(rows)
    assert zeroshot.evaluate(model) == first and sum(rows) == computed
    inline = evaluate(model, cards[:1], processor=processor, options=OPTIONS)["colours"]
    assert first["eval_zeroshot_colours_acc1"] == inline.metrics["acc1"]


def test_locked_text_tower_runs_once_per_text(lit):
    model, processor = lit
    model.vision_model.requires_grad_(True)
    model.text_model.requires_grad_(False)
    encoder = TrainingEncoder(model, processor)
    assert encoder.locked == ("texts",)
    calls = []
    model.text_model.register_forward_hook(lambda m, a, o: calls.append(1))
    texts = ["a red cat", "the big blue dog", "a photo of a green car"]
    first = encoder.encode_texts(texts)
    assert torch.equal(encoder.encode_texts(texts), first) and len(calls) == 1


def test_bad_arguments_fail_before_training(cards):
    with pytest.raises(UserError, match="every_n_steps"):
        ZeroShotEvalCallback(cards, every_n_steps=0)
    with pytest.raises(UserError, match="unknown task"):
        ZeroShotEvalCallback(["no-such-task"])


def test_locked_tower_halves_its_batch_on_out_of_memory(tiny_vtde):
    """The frozen tower is the expensive forward, run while training holds the GPU: it gets the same OOM halving."""
    from transformers import AutoProcessor, VisionTextDualEncoderModel

    from vtde_bench.integrations import TrainingEncoder

    model = VisionTextDualEncoderModel.from_pretrained(tiny_vtde)
    for p in model.vision_model.parameters():
        p.requires_grad_(False)
    encoder = TrainingEncoder(model, AutoProcessor.from_pretrained(tiny_vtde))
    assert "images" in encoder._locked
    images = [helpers.colour_image(c, seed=i) for i, c in enumerate(["red", "blue", "green", "white"] * 2)]
    reference = encoder.encode_images(images)
    encoder._locked["images"].outputs.clear()
    original = model.vision_model.forward

    def limited(pixel_values=None, **kwargs):
        if pixel_values.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(pixel_values=pixel_values, **kwargs)

    model.vision_model.forward = limited
    torch.testing.assert_close(encoder.encode_images(images), reference)
    assert encoder.max_batch == 2
