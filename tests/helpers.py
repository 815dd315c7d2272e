"""Builders for the offline test world: tiny real models saved to folders, and fixture datasets.

Models are real transformers classes built from small configs and saved with
`save_pretrained`, so `--model PATH` loads them exactly as it loads a real
checkpoint. Datasets are written in the real sources' schemas and layouts.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from vtde_bench import results
from vtde_bench.results import DatasetRecord, ModelRecord, RunRecord, TaskRecord, TaskResult

WORDS = (
    "a an the of photo picture image small big large red green blue yellow black white "
    "cat dog car bird ship plane circle square triangle star on in with and is there two one"
).split()

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
}
COLOUR_NAMES = tuple(COLOURS)  # the classes of the colour tasks, in label order


# ----------------------------------------------------------------------------- tokenizers


def _bert_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # Built from a folder: passing vocab_file= is silently ignored (shared/TRAPS.md).
    return BertTokenizerFast.from_pretrained(folder)


def _bytes_to_unicode() -> list[str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder)


def _siglip_tokenizer(folder: Path):
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    sentences = [" ".join(WORDS)] * 20 + WORDS
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(folder / "spiece"), vocab_size=60,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        minloglevel=2,
    )
    return SiglipTokenizer(vocab_file=str(folder / "spiece.model"))


# ----------------------------------------------------------------------------- models


def save_tiny_vtde(folder: Path, *, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> Path:
    """A `VisionTextDualEncoderModel` from a tiny ViT and a tiny BERT, with its processor."""
    from transformers import BertConfig, VisionTextDualEncoderConfig, VisionTextDualEncoderModel, VisionTextDualEncoderProcessor, ViTConfig, ViTImageProcessor

    torch.manual_seed(seed)
    tokenizer = _bert_tokenizer(folder / "_tok")
    vision = ViTConfig(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=projection_dim)
    model = VisionTextDualEncoderModel(config=config)
    image_processor = ViTImageProcessor(size={"height": image_size, "width": image_size})
    processor = VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """A `CLIPModel` with a byte-level tokenizer; special-token ids set so pooling reads the real EOS."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer(folder / "_tok")
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32, projection_dim=16, **ids),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, projection_dim=16),
        projection_dim=16,
    )
    model = CLIPModel(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def save_tiny_siglip(folder: Path, *, seed: int = 0) -> Path:
    """A `SiglipModel` with a sentencepiece tokenizer; texts must be padded to the max length."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    torch.manual_seed(seed)
    tokenizer = _siglip_tokenizer(folder / "_tok")
    config = SiglipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=16, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64),
    )
    model = SiglipModel(config)
    tokenizer.model_max_length = 16
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


OPEN_CLIP_CFG = {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
OPENAI_MEAN_STD = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}


def save_tiny_open_clip(folder: Path, *, seed: int = 0, preprocess: dict | None = None, weights: bool = True) -> Path:
    """An open_clip `CLIP` (tiny ViT, CLIP BPE text tower of context 16) saved in open_clip's `local-dir:` layout:
    open_clip_config.json (model_cfg, preprocess_cfg) and open_clip_model.safetensors."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**OPEN_CLIP_CFG)
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    config = {"model_cfg": OPEN_CLIP_CFG,
              "preprocess_cfg": preprocess or {**OPENAI_MEAN_STD, "interpolation": "bicubic", "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


# ----------------------------------------------------------------------------- images and datasets


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    """The image's file bytes in Pillow format `fmt` (PNG, JPEG, WEBP, TIFF, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    return encode(image, "PNG")


def colour_image(colour: str, *, seed: int, size: int = 32) -> Image.Image:
    """A solid colour with a little seeded noise, so every image's bytes differ."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[colour], dtype=np.int16)
    pixels = np.clip(base + rng.integers(-12, 13, size=(size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def classification_rows(n: int, classnames: Sequence[str], *, seed: int = 0) -> list[tuple[bytes, int]]:
    """(PNG bytes, label) rows; class i is colour classnames[i]."""
    rng = np.random.default_rng(seed)
    labels = [i % len(classnames) for i in range(n)]
    rng.shuffle(labels)
    return [(png_bytes(colour_image(classnames[y], seed=seed * 1000 + i)), int(y)) for i, y in enumerate(labels)]


def retrieval_rows(n: int, *, seed: int = 0) -> list[tuple[bytes, list[str]]]:
    """(PNG bytes, captions) rows with 1 to 6 captions per image (unequal on purpose)."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    rows = []
    for i in range(n):
        colour = colours[i % len(colours)]
        caps = [f"a {colour} {rng.choice(['photo', 'picture', 'image'])} of a {rng.choice(['cat', 'dog', 'car'])}" for _ in range(1 + i % 6)]
        rows.append((png_bytes(colour_image(colour, seed=seed * 1000 + i)), caps))
    return rows


def write_parquet(folder: Path, split: str, rows, *, kind: str, classnames: Sequence[str] = (), image_column: str = "image",
                  target_column: str | None = None, config: str | None = None) -> Path:
    """The hub parquet layout: `[config/]<split>-00000-of-00001.parquet` with `datasets` features."""
    import datasets

    target_column = target_column or ("label" if kind == "zeroshot_classification" else "captions")
    images = [{"bytes": b, "path": None} for b, _ in rows]
    if kind == "zeroshot_classification":
        features = datasets.Features({image_column: datasets.Image(), target_column: datasets.ClassLabel(names=list(classnames))})
    else:
        features = datasets.Features({image_column: datasets.Image(), target_column: datasets.Sequence(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({image_column: images, target_column: [t for _, t in rows]}, features=features)
    out = (folder / config if config else folder) / f"{split}-00000-of-00001.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out))
    return folder


def write_arrow(folder: Path, split: str, rows, *, kind: str, classnames: Sequence[str] = ()) -> Path:
    """A `save_to_disk` DatasetDict folder."""
    import datasets

    tmp = folder.parent / (folder.name + "_src")
    write_parquet(tmp, split, rows, kind=kind, classnames=classnames)
    ds = datasets.load_dataset("parquet", data_files={split: str(tmp / f"{split}-00000-of-00001.parquet")})
    ds.save_to_disk(str(folder))
    return folder


def write_webdataset(folder: Path, split: str, rows, *, kind: str, classnames: Sequence[str] = (), shard_size: int = 7,
                     ext: str = "png", keys_per_shard: bool = False) -> Path:
    """The CLIP_benchmark layout: `<split>/NN.tar` shards + nshards.txt, classnames.txt, templates, dataset_type.txt.

    `keys_per_shard`: every shard names its rows from s0000000 again, as shards written separately do.
    """
    (folder / split).mkdir(parents=True, exist_ok=True)
    shards = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    for s, shard in enumerate(shards):
        with tarfile.open(folder / split / f"{s}.tar", "w") as tar:
            for j, (image, target) in enumerate(shard):
                key = f"s{j if keys_per_shard else s * shard_size + j:07d}"
                payload = str(target).encode() if kind == "zeroshot_classification" else "\n".join(target).encode()
                for name, data in ((f"{key}.{ext}", image), (f"{key}.{'cls' if kind == 'zeroshot_classification' else 'txt'}", payload)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (folder / split / "nshards.txt").write_text(f"{len(shards)}\n")
    (folder / "dataset_type.txt").write_text(f"{kind}\n")
    if kind == "zeroshot_classification":
        (folder / "classnames.txt").write_text("\n".join(classnames) + "\n")
        (folder / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\n")
    return folder


def write_imagefolder(folder: Path, split: str, rows, *, classnames: Sequence[str]) -> Path:
    """`<split>/<class name>/<key>.png`."""
    for i, (image, label) in enumerate(rows):
        target = folder / split / classnames[label] / f"{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image)
    return folder


def write_card(path: Path, *, name: str, kind: str, source: dict, classnames: Sequence[str] = (),
               templates: Sequence[str] = ("a photo of a {c}.", "a picture of the {c}.")) -> Path:
    """A task card, with its class-name and template files beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f'name = "{name}"', f'type = "{kind}"', "version = 1", "", "[source]"]
    for key, value in source.items():
        lines.append(f"{key} = {json.dumps(value) if isinstance(value, str) else value}")
    if kind == "zeroshot_classification":
        (path.parent / f"{name}_classnames.txt").write_text("\n".join(classnames) + "\n")
        (path.parent / f"{name}_templates.txt").write_text("\n".join(templates) + "\n")
        lines += ["", "[prompts]", f'classnames = "{name}_classnames.txt"', f'templates = "{name}_templates.txt"']
    path.write_text("\n".join(lines) + "\n")
    return path


def colour_card(folder: Path, rows, *, name: str = "colours", classnames: Sequence[str] = tuple(COLOURS),
                layout: str = "parquet", **source) -> Path:
    """A classification card over `rows`, written beside it in `layout` (parquet or arrow)."""
    data = folder / f"{name}-data"
    if layout == "parquet":
        write_parquet(data, "test", rows, kind="zeroshot_classification", classnames=classnames)
    else:
        write_arrow(data, "test", rows, kind="zeroshot_classification", classnames=classnames)
    source = {"path": data.name, "split": "test", "num_samples": len(rows), **source}
    return write_card(folder / f"{name}.toml", name=name, kind="zeroshot_classification", source=source, classnames=classnames)


def write_colour_cards(root: Path, colour_rows, caption_rows, classnames: Sequence[str]) -> tuple[Path, Path]:
    """The two small tasks most tests use: colours (classification, parquet) and captions (retrieval, webdataset)."""
    write_parquet(root / "data" / "colours", "test", colour_rows, kind="zeroshot_classification", classnames=classnames)
    write_webdataset(root / "data" / "captions", "test", caption_rows, kind="retrieval")
    cls = write_card(root / "cards" / "colours.toml", name="colours", kind="zeroshot_classification",
                     source={"path": "../data/colours", "split": "test", "num_samples": len(colour_rows)}, classnames=classnames)
    ret = write_card(root / "cards" / "captions.toml", name="captions", kind="retrieval",
                     source={"path": "../data/captions", "split": "test", "num_samples": len(caption_rows)})
    return cls, ret


# ----------------------------------------------------------------------------- a model whose answers are known


class ColourModel:
    """One-hot colour embeddings: an image embeds as the one-hot of its nearest colour, a text as the one-hot of
    the colour word it holds. `swap` makes it see one colour as another."""

    PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=float)

    def __init__(self, swap: dict[str, str] | None = None):
        self.swap = swap or {}

    def encode_images(self, images):
        out = torch.zeros(len(images), len(COLOUR_NAMES))
        for i, image in enumerate(images):
            mean = np.asarray(image, dtype=float).reshape(-1, 3).mean(0)
            colour = COLOUR_NAMES[int(np.argmin(((self.PALETTE - mean) ** 2).sum(1)))]
            out[i, COLOUR_NAMES.index(self.swap.get(colour, colour))] = 1
        return out

    def encode_texts(self, texts):
        out = torch.full((len(texts), len(COLOUR_NAMES)), 0.01)
        for i, text in enumerate(texts):
            for j, colour in enumerate(COLOUR_NAMES):
                if colour in text.replace(".", " ").split():
                    out[i, j] = 1
        return out


# ----------------------------------------------------------------------------- results written as `run` writes them
# Real runs with tiny models show the pipeline end to end; these make cases of a known size (a regression of so
# many points, a limited run, another dataset fingerprint) without a model.

FINGERPRINT = "d" * 64


def classification_samples(correct: np.ndarray, *, num_classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """A per-sample table like the classification evaluator's: rank 1 where `correct`, else rank 2..num_classes."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    labels = np.arange(n) % num_classes
    ranks = np.where(correct, 1, rng.integers(2, num_classes + 1, size=n))
    top5 = [[int(label)] + [int((label + j) % num_classes) for j in range(1, 5)] for label in labels]
    return pd.DataFrame({"key": [f"{i:05d}" for i in range(n)], "label": labels, "rank": ranks, "top5": top5})


def classification_metrics(samples: pd.DataFrame, num_classes: int) -> dict[str, float]:
    top1 = samples["rank"] <= 1
    return {"acc1": float(top1.mean()), "acc5": float((samples["rank"] <= 5).mean()),
            "mean_per_class_recall": float(top1.groupby(samples["label"]).mean().mean())}


def write_result(
    out: Path, *, slug: str, task: str, metrics: dict[str, float] | None = None, samples: pd.DataFrame | None = None,
    kind: str = "zeroshot_classification", main_metric: str | None = None, version: int = 1,
    fingerprint: str = FINGERPRINT, limit: int | None = None, intervals: dict[str, list[float]] | None = None,
    num_classes: int = 10,
) -> Path:
    """Write one result (and its per-sample file when `samples` is given) under `out/<slug>/`; returns the JSON path."""
    if metrics is None:
        assert samples is not None
        metrics = classification_metrics(samples, num_classes)
    main_metric = main_metric or ("acc1" if kind == "zeroshot_classification" else "mean_recall@1")
    per_class = {f"class{i}": 0.5 for i in range(num_classes)} if kind == "zeroshot_classification" else None
    result = TaskResult(
        task=TaskRecord(name=task, version=version, type=kind, main_metric=main_metric),
        model=ModelRecord(path=f"/models/{slug}", slug=slug, weights_fingerprint=slug.ljust(64, "0"), num_parameters=1,
                          embedding_dim=16, model_type="synthetic"),
        dataset=DatasetRecord(source="synthetic", split="test", layout="parquet", location="-", fingerprint=fingerprint,
                              num_images=0 if samples is None else len(samples), num_texts=num_classes),
        metrics=metrics, main_score=metrics[main_metric], per_class_recall=per_class,
        intervals={k: tuple(v) for k, v in (intervals or {}).items()},
        run=RunRecord(precision="fp32", device="cpu", batch_size=64, workers=0, limit=limit, date="2026-01-01T00:00:00+00:00"),
        samples=samples,
    )
    return results.write_result(result, out)
