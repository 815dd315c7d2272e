"""A tiny dual encoder that learns the built-in `shapes` demo task on a CPU in under a minute.

The demo lets a user (and the test suite) see the whole benchmark work end to end
without downloading a model: `build_demo_model` makes an untrained ViT + BERT dual
encoder, `train_demo_model` teaches it the shapes with a CLIP loss, and both can be
saved as ordinary Hugging Face checkpoints that the rest of vtde-bench loads like
any other model. The untrained copy is the baseline that should score near chance.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    BertConfig,
    BertTokenizerFast,
    ViTConfig,
    ViTImageProcessor,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
)

from vtde_bench.errors import UserError
from vtde_bench.encoders.save import save_pretrained_atomically
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.tasks import tasks_dir

# The whole vocabulary of the demo captions, class names and prompt templates. It is
# fixed here, not read from data, so the untrained model is identical on every run;
# scripts/make_demo_data.py refuses to write a caption that uses any other word.
DEMO_WORDS: tuple[str, ...] = tuple(sorted(set("""
    . , a an the of on in at with and is this there over
    image picture drawing photo showing colored background
    center top bottom left right corner
    small little tiny large big
    plain striped checkered dotted
    red orange yellow green cyan blue purple pink white black gray navy brown maroon
    circle square triangle star cross ring diamond arrow heart crescent
""".split())))
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

IMAGE_SIDE = 48  # the demo images are drawn at this size, so the processor never resizes
PATCH_SIDE = 16  # the demo images place each shape in one cell of a 3 x 3 grid of this size
MAX_TEXT_TOKENS = 32

# Training settings, tuned so that training takes about half a minute on two CPU cores and
# reaches 93-97% zero-shot accuracy on the demo test set for each of the seeds 0-10.
TRAIN_STEPS = 800
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
WARMUP_STEPS = 100
WEIGHT_DECAY = 0.05


def default_train_parquet() -> Path:
    """The demo training set that ships with vtde-bench."""
    return tasks_dir() / "data" / "shapes" / "train-00000-of-00001.parquet"


def _build_tokenizer() -> BertTokenizerFast:
    """A WordPiece tokenizer whose vocabulary is exactly the demo words, one id per word.

    It goes through a vocab.txt in a folder because transformers 5 silently ignores
    `vocab_file=` passed to the constructor and leaves a vocabulary of special tokens only.
    """
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("".join(f"{t}\n" for t in SPECIAL_TOKENS + DEMO_WORDS), encoding="utf-8")
        tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=MAX_TEXT_TOKENS)
    ids = tokenizer(list(DEMO_WORDS), add_special_tokens=False)["input_ids"]
    if ids != [[i] for i in range(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(DEMO_WORDS))]:
        raise RuntimeError("the demo tokenizer does not map each demo word to its own id")
    return tokenizer


def build_demo_model(*, seed: int = 0) -> tuple[VisionTextDualEncoderModel, VisionTextDualEncoderProcessor]:
    """An untrained, seeded ViT + BERT dual encoder small enough to train on a CPU, and its processor."""
    tokenizer = _build_tokenizer()
    image_processor = ViTImageProcessor(
        size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    # One patch per grid cell of the demo images, so each shape lies inside one patch.
    # An initializer range of 0.1 rather than the default 0.02 keeps the first embeddings of
    # different inputs apart: with 0.02, training stayed at loss log(batch size) for all its steps.
    vision = ViTConfig(
        image_size=IMAGE_SIDE, patch_size=PATCH_SIDE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, initializer_range=0.1,
    )
    text = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=MAX_TEXT_TOKENS, pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, initializer_range=0.1,
    )
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=64)
    with torch.random.fork_rng(devices=[]):  # seed the weights without resetting the caller's random state
        torch.manual_seed(seed)
        model = VisionTextDualEncoderModel(config=config)
    model.eval()
    return model, VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_untrained_demo_model(out_dir: Path, *, seed: int = 0) -> Path:
    """Save the untrained demo model: the near-chance baseline that the trained one is compared with."""
    model, processor = build_demo_model(seed=seed)
    return save_pretrained_atomically(model, processor, out_dir)


def _load_training_data(
    path: Path, processor: VisionTextDualEncoderProcessor
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Preprocess every image and caption once, so that a training step is only tensor indexing.

    Returns pixel values, the tokenized captions of all images one after another, and
    for each image the index of its first caption and its number of captions.
    """
    if not path.is_file():
        raise UserError(f"demo training data not found: {path} (run `python scripts/make_demo_data.py`)")
    table = pq.read_table(path, columns=["image", "captions"]).to_pydict()
    images = [Image.open(io.BytesIO(cell["bytes"])).convert("RGB") for cell in table["image"]]
    pixel_values = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    captions = [text for texts in table["captions"] for text in texts]
    tokens = processor.tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
    counts = torch.tensor([len(texts) for texts in table["captions"]])
    return pixel_values, dict(tokens), torch.cumsum(counts, 0) - counts, counts


def train_demo_model(
    out_dir: Path,
    *,
    train_parquet: Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    max_seconds: float | None = None,
) -> Path:
    """Train the demo model contrastively on the shapes training set and save it to `out_dir`.

    Each step pairs a batch of images with one randomly chosen caption each and
    minimises the symmetric CLIP cross-entropy. `max_seconds` stops training early
    (the model is still saved) so that a slow machine cannot hang a test run.
    """
    progress = progress or NullProgress()
    model, processor = build_demo_model(seed=seed)
    path = Path(train_parquet) if train_parquet is not None else default_train_parquet()
    pixel_values, tokens, starts, counts = _load_training_data(path, processor)

    batch_size = min(BATCH_SIZE, len(counts))
    targets = torch.arange(batch_size)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    # The warm-up matters: without it some seeds sit at loss log(batch) for hundreds of steps.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / TRAIN_STEPS))
    )
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    model.train()
    with torch.random.fork_rng(devices=[]), progress.bar("Training demo model", total=TRAIN_STEPS) as bar:
        torch.manual_seed(seed)
        for _ in range(TRAIN_STEPS):
            if deadline is not None and time.monotonic() > deadline:
                break
            images = torch.randperm(len(counts), generator=generator)[:batch_size]
            picks = starts[images] + (torch.rand(batch_size, generator=generator) * counts[images]).long()
            out = model(pixel_values=pixel_values[images], **{name: ids[picks] for name, ids in tokens.items()})
            loss = (F.cross_entropy(out.logits_per_image, targets) + F.cross_entropy(out.logits_per_text, targets)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():  # as in CLIP: a temperature below 1/100 makes training unstable
                model.logit_scale.clamp_(0, math.log(100))
            bar.advance()
    model.eval()
    return save_pretrained_atomically(model, processor, out_dir)
