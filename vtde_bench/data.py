"""Loading a task's data, in any supported layout, into one canonical shape.

Every layout goes through `datasets`: a hub id at a pinned revision, a
`save_to_disk` folder ("arrow"), parquet files, webdataset shards in the
CLIP_benchmark layout, and an imagefolder. Whatever the layout, the result is
a `TaskData`: row keys, lazily read image bytes, and integer labels or lists
of captions, plus a content fingerprint that does not depend on the layout.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image

from vtde_bench.errors import UserError
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.spec import SORTED_FOLDERS, TaskSpec

if TYPE_CHECKING:
    from vtde_bench.cache import EmbeddingCache

LAYOUTS = ("arrow", "webdataset", "parquet", "imagefolder")  # the order in which local layouts are tried

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# A webdataset sample's image, in CLIP_benchmark's order of preference (`to_tuple("webp;png;jpg;jpeg")`):
# shards may mix them, and a sample holding two takes the first.
WDS_IMAGE_COLUMNS = ("webp", "png", "jpg", "jpeg")


@dataclass
class TaskData:
    """A task's rows in canonical form; images stay on disk until asked for.

    `labels` is set for classification and `captions` for retrieval. A row's image is in the
    first of `image_columns` that holds one (webdataset shards may mix image types).
    """

    dataset: Any  # a datasets.Dataset whose image columns are not decoded
    image_columns: tuple[str, ...]
    keys: list[str]
    layout: str
    location: str
    labels: list[int] | None = None
    captions: list[list[str]] | None = None
    blank_captions: int = 0  # captions that are empty or only whitespace (kept, as CLIP_benchmark keeps them)
    fingerprint: str = ""  # content only: the same rows in any order or layout give the same value
    image_sha256: list[str] | None = None  # each row's image bytes' sha256, in row order
    order_fingerprint: str = ""  # the image bytes in row order: what cached embeddings, stored by row, depend on

    def __len__(self) -> int:
        return len(self.keys)

    def image_bytes(self, index: int) -> bytes:
        row = self.dataset[index]
        return _as_bytes(_first([row[c] for c in self.image_columns]), self.keys[index], self.image_columns)

    def _iter_image_values(self, batch_size: int = 256):
        """Each row's image value in row order, read in batches (much faster than row by row)."""
        columns = self.dataset.select_columns(list(self.image_columns))
        for batch in columns.iter(batch_size=batch_size):
            yield from map(lambda *values: _first(values), *(batch[c] for c in self.image_columns))

    def image_hashes(
        self, cache: "EmbeddingCache | None" = None, progress: Progress | None = None, description: str = "Fingerprinting images"
    ) -> list[str]:
        """sha256 of every image's bytes, in row order.

        With a cache, the hashes are kept under a key made of the identity (path,
        size, mtime, inode) of the arrow files the rows live in, as `datasets`
        itself does for local data files: a warm re-run then reads no image bytes
        at all, which on ImageNet-sized sets is most of its time. Images stored as
        paths (an imagefolder) live outside those files and are never cached.
        """
        progress = progress or NullProgress()
        entry = cache.entry(key) if cache is not None and (key := self._hashes_key()) is not None else None
        cached = entry.read_json("image-hashes") if entry is not None else None
        if isinstance(cached, list) and len(cached) == len(self):
            return cached
        hashes, from_paths = [], False
        with progress.bar(description, total=len(self)) as bar:
            for value, key in zip(self._iter_image_values(), self.keys):
                hashes.append(hashlib.sha256(_as_bytes(value, key, self.image_columns)).hexdigest())
                from_paths = from_paths or (isinstance(value, dict) and value.get("bytes") is None)
                bar.advance()
        if entry is not None and not from_paths:
            entry.write_json("image-hashes", hashes)
        return hashes

    def _hashes_key(self) -> dict[str, Any] | None:
        files = [f["filename"] for f in getattr(self.dataset, "cache_files", None) or []]
        if not files:
            return None
        identity = []
        for name in files:
            stat = os.stat(name)
            identity.append([os.path.realpath(name), stat.st_size, stat.st_mtime_ns, stat.st_ino])
        columns = self.image_columns[0] if len(self.image_columns) == 1 else list(self.image_columns)
        return {"kind": "image-hashes", "files": identity, "rows": len(self), "column": columns}


def _first(values: Sequence[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def _as_bytes(value: Any, key: str, columns: Sequence[str]) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes") is not None:  # b"" is a zero-byte image: a bad image (skippable), not a missing one
            return value["bytes"]
        if value.get("path"):
            return Path(value["path"]).read_bytes()
    where = f"column '{columns[0]}'" if len(columns) == 1 else f"any of the columns {', '.join(columns)}"
    raise UserError(f"image {key!r} holds no image bytes or path in {where}; check the image column (or the shard's files)")


# ----------------------------------------------------------------------------- image decoding


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes to an 8-bit RGB PIL image, by the rule of transformers' processors.

    16-bit and 32-bit integer images are scaled to 8 bits first: `convert("RGB")`,
    which the processors do, would clip them and turn them nearly white.
    Transparency is composited onto white (`to_rgb`).
    Raises whatever Pillow raises for a corrupt image (callers report the key).
    """
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(array / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels as transformers' `convert_to_rgb` makes them, which every transformers processor applies.

    An image with an alpha band (RGBA, LA, PA) or a transparency colour (a palette, greyscale or RGB
    PNG with a `tRNS` chunk) is composited onto white; any other mode is converted with
    `convert("RGB")`. Plain `convert("RGB")` would keep the colour stored under transparent pixels
    (often black) for alpha bands and ignore `tRNS` altogether.
    """
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image_array(data: bytes) -> Any:
    """`decode_image`'s pixels as an (H, W, 3) uint8 tensor, for the batched preprocessing.

    Plain 8-bit JPEGs (RGB or greyscale, by Pillow's reading of the header) are
    decoded by torchvision's libjpeg-turbo straight into a tensor, about 25% less
    work than Pillow plus a copy. That path is taken only where it gave exactly
    Pillow's pixels on the probe JPEGs of `_torchvision_jpeg_is_exact`; everything
    else, and any JPEG torchvision refuses, goes through `decode_image`, so errors
    read the same either way.
    """
    import numpy as np
    import torch

    header = Image.open(io.BytesIO(data))  # reads the header, not the pixels
    if header.format == "JPEG" and header.mode in ("RGB", "L") and _torchvision_jpeg_is_exact():
        try:
            return _torchvision_jpeg(data)
        except RuntimeError:
            pass  # Pillow decides, and words the error
    return torch.from_numpy(np.array(decode_image(data)))


def _torchvision_jpeg(data: bytes) -> Any:
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; if they
        # go, the ImportError turns this path off (`_torchvision_jpeg_is_exact`).
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB).permute(1, 2, 0)


@functools.cache
def _torchvision_jpeg_is_exact() -> bool:
    """Whether torchvision decodes JPEGs to exactly Pillow's pixels here (both usually wrap libjpeg-turbo).

    Probes: colour with 4:2:0, 4:2:2 and 4:4:4 chroma subsampling, progressive, greyscale, odd sizes.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    probes = [("RGB", {"subsampling": 2}), ("RGB", {"subsampling": 1}), ("RGB", {"subsampling": 0, "quality": 95}),
              ("RGB", {"progressive": True}), ("L", {})]
    for k, (mode, options) in enumerate(probes):
        small = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        small.resize((61 + 20 * k, 47 + 13 * k), Image.BICUBIC).convert(mode).save(buffer, format="JPEG", **options)
        blob = buffer.getvalue()
        try:
            ours = _torchvision_jpeg(blob)
        except (ImportError, RuntimeError):  # a torchvision without its image decoders, or one that refuses
            return False
        if not np.array_equal(ours.numpy(), np.asarray(decode_image(blob))):
            return False
    return True


# ----------------------------------------------------------------------------- layout detection


def detect_layouts(folder: Path) -> list[str]:
    """Which of the supported layouts a folder looks like, in the fixed order of `LAYOUTS`."""
    found = []
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        found.append("arrow")
    if any(folder.glob("**/*.tar")):
        found.append("webdataset")
    if any(folder.glob("**/*.parquet")):
        found.append("parquet")
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.glob("*/**/*") if p.is_file()):
        found.append("imagefolder")
    return found


def _local_layout(folder: Path, forced: str = "auto") -> str:
    if not folder.is_dir():
        raise UserError(f"data folder {folder} does not exist; check the path (or run 'vtde-bench download')")
    if forced != "auto":
        return forced
    layouts = detect_layouts(folder)
    if len(layouts) != 1:
        what = "matches none" if not layouts else f"matches several ({', '.join(layouts)})"
        raise UserError(
            f"data folder {folder} {what} of the supported layouts ({', '.join(LAYOUTS)}); "
            "keep exactly one layout in the folder"
        )
    return layouts[0]


# ----------------------------------------------------------------------------- loading per layout


def _load_arrow(folder: Path, split: str) -> Any:
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise UserError(f"{folder} has no split '{split}' (it has: {', '.join(loaded)}); fix source.split in the card")
        return loaded[split]
    return loaded


def _split_files(folder: Path, pattern: str, split: str, config: str | None) -> list[str]:
    root = folder / config if config and (folder / config).is_dir() else folder
    files = sorted(
        (p for p in root.glob(f"**/{pattern}")
         if p.name.startswith(f"{split}-") or p.name.startswith(f"{split}.") or p.parent.name == split),
        key=_natural_key,  # CLIP_benchmark shards are 0.tar ... 10.tar: '10' must not come before '2'
    )
    if not files:
        present = sorted({p.parent.name if p.parent != root else p.name.split("-")[0].split(".")[0] for p in root.glob(f"**/{pattern}")})
        raise UserError(
            f"{folder} has no {pattern} files for split '{split}' (found: {', '.join(present) or 'none'}); "
            "fix source.split in the card or the file names"
        )
    return [str(p) for p in files]


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _webdataset_features(task: TaskSpec) -> Any:
    """The columns read from CLIP_benchmark shards, declared: `datasets` otherwise infers them from a shard's first
    five samples, and refuses a shard whose samples mix image types (or drops a type it did not see there)."""
    import datasets

    target = {"cls": datasets.Value("int64")} if _needs_labels(task) else {"txt": datasets.Value("string")}
    return datasets.Features({"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
                              **{c: datasets.Image(decode=False) for c in WDS_IMAGE_COLUMNS}, **target})


def _load_files(builder: str, folder: Path, pattern: str, split: str, config: str | None, features: Any = None) -> Any:
    import datasets

    files = _split_files(folder, pattern, split, config)
    try:
        return datasets.load_dataset(builder, data_files={split: files}, split=split, features=features)
    except ValueError as e:  # also pyarrow's ArrowInvalid; `datasets` raises these for files with no rows
        raise UserError(f"{folder}: cannot read the {pattern} files of split '{split}' ({e}); are they empty or damaged?") from None


def _load_imagefolder(folder: Path, split: str) -> Any:
    import datasets

    root = folder / split
    if not root.is_dir():
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.glob("*/*/*") if p.is_file()):
            # <split>/<class>/<image>: falling back to the root would load the other splits as classes.
            present = sorted(p.name for p in folder.iterdir() if p.is_dir())
            raise UserError(f"{folder} has no folder for split '{split}' (found: {', '.join(present)}); fix source.split in the card")
        root = folder  # <class>/<image>, no split folders
    # Name the files: otherwise `datasets` reads class folders such as 'train' or 'bullet train' as splits.
    return datasets.load_dataset("imagefolder", data_dir=str(root), data_files={"train": "**"}, split="train")


def _load_hub(task: TaskSpec) -> Any:
    import datasets

    src = task.source
    if src.format == "webdataset":
        # The CLIP_benchmark repos hold tar shards beside text files; pointing the
        # hub loader at the repo would pick the wrong builder, so name the shards.
        pattern = f"hf://datasets/{src.hub}@{src.revision}/{src.split}/*.tar"
        return datasets.load_dataset("webdataset", data_files={src.split: pattern}, split=src.split,
                                     features=_webdataset_features(task))
    try:
        return datasets.load_dataset(src.hub, name=src.config, revision=src.revision, split=src.split)
    except ValueError as e:
        raise UserError(f"task {task.name}: cannot load split '{src.split}' of {src.hub} ({e})") from None


# ----------------------------------------------------------------------------- canonical form


@dataclass(frozen=True)
class _Columns:
    images: tuple[str, ...]
    target: str
    key: str | None
    captions_are_lines: bool = False


def _columns_for(task: TaskSpec, layout: str, dataset: Any) -> _Columns:
    target = task.source.label_column if _needs_labels(task) else task.source.caption_column
    if layout == "webdataset":
        return _Columns(WDS_IMAGE_COLUMNS, "cls" if _needs_labels(task) else "txt", "__key__", captions_are_lines=True)
    if layout == "imagefolder":
        return _Columns(("image",), "label", None)
    return _Columns((task.source.image_column,), target or "", task.source.key_column)


def _needs_labels(task: TaskSpec) -> bool:
    """What the task's kind needs of each row (`kinds.NEEDS`): an integer label in [0, C) (its spec has `classnames`),
    else one or more captions."""
    return task.kind.needs == "labels"


def _check_columns(task: TaskSpec, dataset: Any, columns: _Columns, where: str) -> None:
    for role, name in (*(("image_column", c) for c in columns.images), ("label/caption column", columns.target),
                       ("key_column", columns.key)):
        if name is not None and name not in dataset.column_names:
            raise UserError(
                f"task {task.name}: {where} has no column '{name}' ({role}); it has {', '.join(dataset.column_names)}"
            )


def _imagefolder_labels(task: TaskSpec, dataset: Any) -> list[int]:
    """Map imagefolder folder names to the card's class indices.

    - `class_folders = "sorted"` in the card: the folders in sorted order are classes 0..C-1 (torchvision's
      ImageFolder rule), and there must be one per class;
    - a `class_folders` file (e.g. ImageNet's wnids): each folder maps by its name in that list;
    - folders named only with digits are class indices (ImageNet-V2 style, never sorted as strings);
    - otherwise each folder must be named like one of the card's classes.
    A folder that matches nothing is an error: never a silent fallback to sorted order, which scrambles
    every label when one folder is misnamed.
    """
    names = dataset.features["label"].names
    folders = task.source.class_folders
    fix = "rename the folder, or map folders to classes with source.class_folders (a file, or \"sorted\")"
    if folders == SORTED_FOLDERS:
        if len(names) != len(task.classnames):
            raise UserError(
                f"task {task.name}: class_folders = \"sorted\" needs one folder per class, but the imagefolder has "
                f"{len(names)} folders for {len(task.classnames)} classes"
            )
        mapping = list(range(len(names)))
    elif folders is not None:
        mapping = _folder_indices(task, names, list(folders), "the card's class_folders list", fix)
    elif all(n.isdigit() for n in names):
        mapping = [int(n) for n in names]
    else:
        shared = {n for n in task.classnames if task.classnames.count(n) > 1}
        ambiguous = [n for n in names if n in shared]
        if ambiguous:
            raise UserError(
                f"task {task.name}: the imagefolder's class folder {ambiguous[0]!r} is the name of several classes; "
                "list each class's folder in source.class_folders"
            )
        mapping = _folder_indices(task, names, list(task.classnames), "the card's class names", fix)
    return [mapping[x] for x in _column(dataset, "label")]


def _folder_indices(task: TaskSpec, names: list[str], choices: list[str], what: str, fix: str) -> list[int]:
    lookup = {name: i for i, name in reversed(list(enumerate(choices)))}
    for name in names:
        if name not in lookup:
            hint = difflib.get_close_matches(name, choices, n=1)
            close = f"; did you mean {hint[0]!r}?" if hint else ""
            raise UserError(f"task {task.name}: the imagefolder's class folder {name!r} is not in {what}{close} "
                            f"({fix})")
    return [lookup[n] for n in names]


def _captions(task: TaskSpec, values: Sequence[Any], keys: list[str], lines: bool) -> list[list[str]]:
    """Each row's captions exactly as the source holds them, blank ones included, as CLIP_benchmark reads them
    (a webdataset `.txt` is `str.splitlines()`: one caption per line, a final newline ending the last)."""
    out = []
    for key, value in zip(keys, values):
        if isinstance(value, str):
            caps = value.splitlines() if lines else [value]
        elif isinstance(value, (list, tuple)) and all(isinstance(c, str) for c in value):
            caps = list(value)
        else:
            raise UserError(
                f"task {task.name}: the caption of row {key!r} is {type(value).__name__}, "
                "not text or a list of text; check source.caption_column"
            )
        if not caps:
            raise UserError(f"task {task.name}: row {key!r} has no caption; every image needs at least one")
        out.append(caps)
    return out


def _labels(task: TaskSpec, values: Sequence[Any], keys: list[str]) -> list[int]:
    labels = []
    for key, value in zip(keys, values):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"task {task.name}: the label of row {key!r} is {value!r}, not an integer class index")
        if not 0 <= value < len(task.classnames):
            raise UserError(
                f"task {task.name}: the label of row {key!r} is {value}, outside the card's "
                f"{len(task.classnames)} classes; check the class-name file and the label column"
            )
        labels.append(value)
    return labels


def _check_local_classnames(task: TaskSpec, folder: Path, progress: Progress) -> None:
    """A CLIP_benchmark copy carries its own classnames.txt: the card's win, but they must agree in number."""
    path = folder / "classnames.txt"
    if not _needs_labels(task) or not path.is_file():
        return
    theirs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(theirs) != len(task.classnames):
        raise UserError(
            f"task {task.name}: {path} lists {len(theirs)} classes but the card has {len(task.classnames)}; "
            "this copy is of another dataset or version"
        )
    if tuple(theirs) != task.classnames:
        progress.note(f"{task.name}: {path} words some class names differently; using the card's class names")


def content_fingerprint(image_hashes: Sequence[str], targets: Sequence[Any]) -> str:
    """sha256 over the rows sorted by (image sha256, label or captions).

    Row keys are left out on purpose: each layout names rows its own way (tar
    keys, file names, row numbers), and the same data in two layouts must get
    the same fingerprint. Sorting makes it independent of row order, as every
    metric is.
    """
    rows = sorted(f"{h}\t{json.dumps(t, ensure_ascii=False)}" for h, t in zip(image_hashes, targets))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode("utf-8") + b"\n")
    return digest.hexdigest()


def load_task_data(
    task: TaskSpec, *, data_dir: str | Path | None = None, limit: int | None = None, progress: Progress | None = None,
    cache: "EmbeddingCache | None" = None,
) -> TaskData:
    """Load a task's rows from its source, or from `data_dir/<task name>/` when given.

    `limit` keeps the first N rows in source order (for retrieval, N images with
    all their captions). `cache` keeps the image hashes of the fingerprint
    (`TaskData.image_hashes`).

    Raises:
        UserError: missing data, a layout that cannot be told apart, a missing split
            or column, labels out of range, captions that are not text, a row count
            that differs from the card's.
    """
    import datasets

    progress = progress or NullProgress()
    src = task.source
    folder: Path | None = None
    if data_dir is not None and (Path(data_dir) / task.name).exists():
        folder = Path(data_dir) / task.name
        layout = _local_layout(folder)
    elif src.path is not None:
        folder = src.path
        layout = _local_layout(folder, src.format)
    elif data_dir is not None:
        raise UserError(
            f"task {task.name}: no local copy at {Path(data_dir) / task.name}; "
            f"run 'vtde-bench download --tasks {task.name} --to {data_dir}' or drop --data-dir"
        )
    else:
        layout = "hub"

    datasets.disable_progress_bars()
    try:
        if layout == "hub":
            dataset = _load_hub(task)
            layout = src.format if src.format != "auto" else "hub"
        elif layout == "arrow":
            dataset = _load_arrow(folder, src.split)
        elif layout == "webdataset":
            dataset = _load_files("webdataset", folder, "*.tar", src.split, None, features=_webdataset_features(task))
        elif layout == "parquet":
            dataset = _load_files("parquet", folder, "*.parquet", src.split, src.config)
        elif layout == "imagefolder":
            dataset = _load_imagefolder(folder, src.split)
        else:
            raise UserError(f"task {task.name}: unknown layout {layout!r}")
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as e:
        raise UserError(f"task {task.name}: cannot load its data ({e}); check the source or use --data-dir") from None
    except datasets.exceptions.DatasetGenerationError as e:
        import errno

        # A full disk while `datasets` writes its arrow cache: the user's to fix, not a crash of ours.
        if getattr(e.__cause__, "errno", None) not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise UserError(
            f"task {task.name}: cannot write the datasets cache ({e.__cause__.strerror}); "
            "free space or point HF_DATASETS_CACHE at another folder"
        ) from None
    finally:
        datasets.enable_progress_bars()

    where = str(folder) if folder is not None else src.describe()
    if len(dataset) == 0:
        raise UserError(f"task {task.name}: the dataset at {where} is empty")
    if len(dataset) != src.num_samples:  # before --limit: a partial copy is an error, not a smaller task
        raise UserError(
            f"task {task.name}: {where} has {len(dataset)} rows in split '{src.split}' but the card expects "
            f"{src.num_samples}; use the complete copy or fix source.num_samples"
        )
    if folder is not None:
        _check_local_classnames(task, folder, progress)
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be a positive number of rows")
        dataset = dataset.select(range(min(limit, len(dataset))))

    columns = _columns_for(task, layout, dataset)
    _check_columns(task, dataset, columns, where)
    for column in columns.images:
        feature = dataset.features.get(column)
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    keys = _row_keys(dataset, columns, layout, folder)

    data = TaskData(dataset=dataset, image_columns=columns.images, keys=keys, layout=layout, location=where)
    if _needs_labels(task):
        if layout == "imagefolder":
            data.labels = _labels(task, _imagefolder_labels(task, dataset), keys)  # folder numbers get the range check too
        else:
            data.labels = _labels(task, _column(dataset, columns.target), keys)
        targets: list[Any] = data.labels
    else:
        data.captions = _captions(task, _column(dataset, columns.target), keys, columns.captions_are_lines)
        data.blank_captions = sum(not c.strip() for caps in data.captions for c in caps)
        targets = data.captions
        total = sum(len(c) for c in data.captions)
        if limit is None and src.num_captions is not None and total != src.num_captions:
            raise UserError(
                f"task {task.name}: {where} has {total} captions but the card expects {src.num_captions}; "
                "use the complete copy or fix source.num_captions"
            )

    hashes = data.image_sha256 = data.image_hashes(cache, progress, f"Fingerprinting {task.name}")
    data.fingerprint = content_fingerprint(hashes, targets)
    data.order_fingerprint = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return data


def _column(dataset: Any, name: str) -> list[Any]:
    """One column as a list, formatted in one batch (`dataset[name]` formats row by row: ~5x slower)."""
    return dataset.select_columns([name])[:][name]


def _row_keys(dataset: Any, columns: _Columns, layout: str, folder: Path | None) -> list[str]:
    if columns.key is not None:
        return [str(k) for k in _column(dataset, columns.key)]
    if layout == "imagefolder" and folder is not None:
        paths = [value["path"] for value in _column(dataset, columns.images[0])]
        # `datasets` gives absolute, symlink-resolved paths; `folder` may be relative (--data-dir) or a link.
        base = folder.resolve()
        return [str(Path(p).resolve().relative_to(base).with_suffix("")) if p else str(i) for i, p in enumerate(paths)]
    return [str(i) for i in range(len(dataset))]
