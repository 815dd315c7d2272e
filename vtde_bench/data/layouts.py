"""The local layouts a task's data may come in, and reading each (or the hub) through `datasets`.

A folder's layout is detected, not guessed: it must look like exactly one of `LAYOUTS`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vtde_bench.errors import UserError
from vtde_bench.spec import TaskSpec

LAYOUTS = ("arrow", "webdataset", "parquet", "imagefolder")  # the order in which local layouts are tried

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

# A webdataset sample's image, in CLIP_benchmark's order of preference (`to_tuple("webp;png;jpg;jpeg")`):
# shards may mix them, and a sample holding two takes the first.
WDS_IMAGE_COLUMNS = ("webp", "png", "jpg", "jpeg")
WDS_METADATA = "npy"  # a sample's metadata member (DataComp reads `to_tuple("cls", "npy")`)


ORIGINAL = "original"  # a source's original files, as its card's `[source.original]` describes them
ORIGINAL_KEY = "__key__"


def original_file(task: TaskSpec, folder: Path) -> Path | None:
    """The JSON file of the card's `[source.original]` in a local copy (at its root or under data/), or None."""
    original = task.source.original
    if original is None or not folder.is_dir():
        return None
    return next((p for p in (folder / original.file, folder / "data" / original.file) if p.is_file()), None)


def _load_original(task: TaskSpec, folder: Path) -> Any:
    """The original files' records as the card's columns: the image (its file under the images folder), the
    captions (one list column, or a column each, as the card reads them) and each record's key."""
    import json

    import datasets

    src, original = task.source, task.source.original
    path = original_file(task, folder)
    assert original is not None and path is not None
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"task {task.name}: {path} is not JSON ({e}); use the source's original file") from None
    items = list(records.items()) if isinstance(records, dict) else list(enumerate(records)) if isinstance(records, list) else None
    if not items or not all(isinstance(r, dict) for _, r in items):
        raise UserError(f"task {task.name}: {path} holds no records (a list, or an object keyed by item id, of objects)")
    images = folder / original.images
    columns = src.caption_columns or (src.caption_column,)
    rows: dict[str, list[Any]] = {src.image_column: [], ORIGINAL_KEY: [], **{c: [] for c in columns}}
    for key, record in items:
        missing = [f for f in (original.image_field, *original.caption_fields) if f not in record]
        if missing:
            raise UserError(f"task {task.name}: record {key!r} of {path} has no field '{missing[0]}'; check source.original")
        image = images / str(record[original.image_field])
        if not image.is_file():
            raise UserError(f"task {task.name}: record {key!r} names {record[original.image_field]!r}, which is not in "
                            f"{images}; put the source's images there")
        rows[src.image_column].append({"path": str(image), "bytes": None})
        rows[ORIGINAL_KEY].append(str(key))
        captions = [record[f] for f in original.caption_fields]
        if src.caption_columns:
            if len(captions) != len(columns):
                raise UserError(f"task {task.name}: source.original.caption_fields lists {len(captions)} fields for the "
                                f"{len(columns)} source.caption_columns; list one per column")
            for c, text in zip(columns, captions):
                rows[c].append(text)
        else:
            rows[columns[0]].append(captions)
    caption = datasets.Value("string")
    features = datasets.Features({src.image_column: datasets.Image(decode=False), ORIGINAL_KEY: datasets.Value("string"),
                                  **{c: caption if src.caption_columns else datasets.Sequence(caption) for c in columns}})
    try:
        return datasets.Dataset.from_dict(rows, features=features)
    except (TypeError, ValueError) as e:  # pyarrow's errors for a caption that is not text
        raise UserError(f"task {task.name}: {path} holds a caption that is not text ({e})") from None


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


def local_layout(folder: Path, forced: str = "auto") -> str:
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

    target = {"cls": datasets.Value("int64")} if task.kind.needs == "labels" else {"txt": datasets.Value("string")}
    if task.source.metadata_fields:  # each sample's KEY.npy: a 1-D array, one number per field (read as floats, checked)
        target[WDS_METADATA] = datasets.Sequence(datasets.Value("float64"))
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


def read_dataset(task: TaskSpec, layout: str, folder: Path | None) -> tuple[Any, str]:
    """The task's split as a `datasets.Dataset`, read from `folder` in `layout` (or from the hub), and the layout
    it was read in.

    Raises:
        UserError: the data cannot be read (names the task and the fix).
    """
    import datasets

    src = task.source
    datasets.disable_progress_bars()
    try:
        if layout == "hub":
            return _load_hub(task), src.format if src.format != "auto" else "hub"
        if layout == "arrow":
            return _load_arrow(folder, src.split), layout
        if layout == "webdataset":
            return _load_files("webdataset", folder, "*.tar", src.split, None, features=_webdataset_features(task)), layout
        if layout == "parquet":
            return _load_files("parquet", folder, "*.parquet", src.split, src.config), layout
        if layout == "imagefolder":
            return _load_imagefolder(folder, src.split), layout
        if layout == ORIGINAL:
            return _load_original(task, folder), layout
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
