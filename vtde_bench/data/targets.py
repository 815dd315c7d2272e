"""What each row holds besides its image, read from the layout's columns: class labels (imagefolder folders
mapped to the card's classes by one rule), captions exactly as the source holds them, and row keys."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vtde_bench.data.layouts import ORIGINAL, ORIGINAL_KEY, WDS_IMAGE_COLUMNS, WDS_METADATA
from vtde_bench.errors import UserError
from vtde_bench.spec import SORTED_FOLDERS, TaskSpec


@dataclass(frozen=True)
class Columns:
    images: tuple[str, ...]
    target: str
    key: str | None
    captions_are_lines: bool = False
    metadata: tuple[str, ...] = ()  # one column holding every field (a webdataset's npy), or a column per field
    extra: tuple[str, ...] = ()  # the card's other columns: candidate captions beyond the first, crop box, group


def columns_for(task: TaskSpec, layout: str, dataset: Any) -> Columns:
    target = task.source.label_column if needs_labels(task) else task.source.caption_column
    fields = task.source.metadata_fields
    if layout == "webdataset":
        return Columns(WDS_IMAGE_COLUMNS, "cls" if needs_labels(task) else "txt", "__key__", captions_are_lines=True,
                       metadata=(WDS_METADATA,) if fields else ())
    if layout == "imagefolder":
        return Columns(("image",), "label", None, metadata=fields)
    src = task.source
    if layout == ORIGINAL:  # read into the card's columns, keyed by the records' own keys
        return Columns((src.image_column,), src.caption_columns[0] if src.caption_columns else src.caption_column or "",
                       ORIGINAL_KEY, extra=src.caption_columns[1:])
    if src.image_columns:  # paired items, expanded to a row per image (`data.pairs`)
        from vtde_bench.data.pairs import CAPTION, IMAGE, ITEM

        return Columns((IMAGE,), CAPTION, ITEM)
    if src.caption_columns:
        target = src.caption_columns[0]
    extra = (*src.caption_columns[1:], *(c for c in (src.crop_column, src.group_column) if c))
    return Columns((src.image_column,), target or "", src.key_column, metadata=fields, extra=extra)


def needs_labels(task: TaskSpec) -> bool:
    """What the task's kind needs of each row (`kinds.NEEDS`): an integer label in [0, C) (its spec has `classnames`),
    else one or more captions."""
    return task.kind.needs == "labels"


def check_columns(task: TaskSpec, dataset: Any, columns: Columns, where: str) -> None:
    for role, name in (*(("image_column", c) for c in columns.images), ("label/caption column", columns.target),
                       ("key_column", columns.key), *(("metadata (source.metadata_fields)", c) for c in columns.metadata),
                       *(("caption, crop or group column", c) for c in columns.extra)):
        if name is not None and name not in dataset.column_names:
            raise UserError(
                f"task {task.name}: {where} has no column '{name}' ({role}); it has {', '.join(dataset.column_names)}"
            )


def imagefolder_labels(task: TaskSpec, dataset: Any) -> list[int]:
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
    return [mapping[x] for x in column(dataset, "label")]


def _folder_indices(task: TaskSpec, names: list[str], choices: list[str], what: str, fix: str) -> list[int]:
    lookup = {name: i for i, name in reversed(list(enumerate(choices)))}
    for name in names:
        if name not in lookup:
            hint = difflib.get_close_matches(name, choices, n=1)
            close = f"; did you mean {hint[0]!r}?" if hint else ""
            raise UserError(f"task {task.name}: the imagefolder's class folder {name!r} is not in {what}{close} "
                            f"({fix})")
    return [lookup[n] for n in names]


def captions_of(task: TaskSpec, values: Sequence[Any], keys: list[str], lines: bool) -> list[list[str]]:
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


def labels_of(task: TaskSpec, values: Sequence[Any], keys: list[str]) -> list[int]:
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


def metadata_of(task: TaskSpec, dataset: Any, columns: Columns, keys: list[str]) -> dict[str, list[int]]:
    """Each metadata field's value per row, as the card's `metadata_fields` name them: from one array per row (a
    webdataset's KEY.npy, fields in order) or a column per field. Values are group indices: integers, 0 or more
    (WILDS' groupers take them so).

    Raises:
        UserError: a row lacks its metadata, holds another number of values, or a value is not such an integer.
    """
    fields = task.source.metadata_fields
    if columns.metadata == (WDS_METADATA,):
        rows = column(dataset, WDS_METADATA)
    else:
        rows = list(zip(*(column(dataset, c) for c in columns.metadata)))
    out: dict[str, list[int]] = {f: [] for f in fields}
    for key, row in zip(keys, rows):
        if row is None or len(row) != len(fields):
            got = "none" if row is None else f"{len(row)} values"
            raise UserError(f"task {task.name}: row {key!r} has {got} of metadata, but the card's source.metadata_fields "
                            f"names {len(fields)} ({', '.join(fields)}); use a copy with each sample's .npy member")
        for name, value in zip(fields, row):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
                raise UserError(f"task {task.name}: row {key!r} has metadata {name} = {value!r}, not a group index "
                                "(an integer, 0 or more); check source.metadata_fields against the source")
            out[name].append(int(value))
    return out


def caption_values(task: TaskSpec, dataset: Any, columns: Columns) -> list[Any]:
    """Each row's caption cell, or (captions in several columns) the tuple of its cells, in the card's order."""
    names = task.source.caption_columns
    if not names or task.source.image_columns:  # paired rows hold each image's own caption (`data.pairs`)
        return column(dataset, columns.target)
    return list(zip(*(column(dataset, c) for c in names)))


def crops_of(task: TaskSpec, values: Sequence[Any], keys: list[str]) -> list[tuple[float, float, float, float]]:
    """Each row's crop box (x, y, w, h) from a column of {x, y, w, h} structs, as ARO's copies hold them."""
    out = []
    for key, value in zip(keys, values):
        box = tuple(value.get(k) for k in "xywh") if isinstance(value, dict) else None
        if box is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise UserError(f"task {task.name}: row {key!r} has crop box {value!r} in column '{task.source.crop_column}', "
                            "not {x, y, w, h} numbers with a positive width and height; check source.crop_column")
        out.append(tuple(float(v) for v in box))
    return out


def groups_of(task: TaskSpec, values: Sequence[Any], keys: list[str]) -> list[str]:
    """Each row's group name: a string, or a list of strings joined with "_" (ARO's attribute pair: 'white_black')."""
    out = []
    for key, value in zip(keys, values):
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            value = "_".join(value)
        if not isinstance(value, str) or not value:
            raise UserError(f"task {task.name}: row {key!r} has group {value!r} in column '{task.source.group_column}', "
                            "not a name (text, or a list of text); check source.group_column")
        out.append(value)
    return out


def column(dataset: Any, name: str) -> list[Any]:
    """One column as a list, formatted in one batch (`dataset[name]` formats row by row: ~5x slower)."""
    return dataset.select_columns([name])[:][name]


def row_keys(dataset: Any, columns: Columns, layout: str, folder: Path | None) -> list[str]:
    if columns.key is not None:
        return [str(k) for k in column(dataset, columns.key)]
    if layout == "imagefolder" and folder is not None:
        paths = [value["path"] for value in column(dataset, columns.images[0])]
        # `datasets` gives absolute, symlink-resolved paths; `folder` may be relative (--data-dir) or a link.
        base = folder.resolve()
        return [str(Path(p).resolve().relative_to(base).with_suffix("")) if p else str(i) for i, p in enumerate(paths)]
    return [str(i) for i in range(len(dataset))]
