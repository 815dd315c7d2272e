"""Loading a task's rows from its source, or from a local copy, into one canonical `TaskData`.

Every layout goes through `datasets`: a hub id at a pinned revision, a `save_to_disk` folder
("arrow"), parquet files, webdataset shards in the CLIP_benchmark layout, and an imagefolder.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtde_bench.data.instances import LAYOUT as INSTANCES
from vtde_bench.data.instances import load_instances
from vtde_bench.data.layouts import ORIGINAL, local_layout, original_file, read_dataset
from vtde_bench.data.provenance import recorded_commit, resolve_commit
from vtde_bench.data.rows import TaskData, content_fingerprint
from vtde_bench.data import pairs
from vtde_bench.data.targets import (caption_values, captions_of, check_columns, column, columns_for, crops_of, groups_of,
                                     imagefolder_labels, labels_of, metadata_of, needs_labels, row_keys)
from vtde_bench.errors import UserError
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.spec import TaskSpec

if TYPE_CHECKING:
    from vtde_bench.cache import EmbeddingCache


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
    progress = progress or NullProgress()
    folder, layout = local_copy(task, data_dir)
    commit = recorded_commit(folder, task) if folder is not None else resolve_commit(task) if task.source.hub else None
    if folder is None and not task.source.pinned:  # read the commit the branch names now, and record that one
        task = replace(task, source=replace(task.source, revision=commit))
    if task.kind.needs == "instances":  # instances over a pool of images: their own table and images (or the hub's)
        data = load_instances(task, folder, limit=limit, progress=progress, cache=cache)
    else:
        data = _load_rows(task, folder, layout, limit=limit, progress=progress, cache=cache)
    data.resolved_commit = commit
    return data


def _load_rows(task: TaskSpec, folder: Path | None, layout: str, *, limit: int | None, progress: Progress,
               cache: "EmbeddingCache | None") -> TaskData:
    """The rows of a task whose kind needs a label or captions per image, in one of `LAYOUTS` or from the hub."""
    import datasets

    src = task.source

    dataset, layout = read_dataset(task, layout, folder)

    where = str(folder) if folder is not None else src.describe()
    if len(dataset) == 0:
        raise UserError(f"task {task.name}: the dataset at {where} is empty")
    if len(dataset) != src.num_samples:  # before --limit: a partial copy is an error, not a smaller task
        raise UserError(
            f"task {task.name}: {where} has {len(dataset)} rows in split '{src.split}' but the card expects "
            f"{src.num_samples}; use the complete copy or fix source.num_samples"
        )
    if folder is not None:
        check_local_classnames(task, folder, progress)
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be a positive number of rows")
        dataset = dataset.select(range(min(limit, len(dataset))))

    named = [f for f, v in (("image_columns", src.image_columns), ("caption_columns", src.caption_columns),
                            ("crop_column", src.crop_column), ("group_column", src.group_column)) if v]
    if named and layout in ("webdataset", "imagefolder"):  # their columns are fixed by the layout
        raise UserError(f"task {task.name}: a {layout} copy has none of the columns source.{named[0]} names; use the "
                        "source's own files (vtde-bench download)")
    items = None
    if src.image_columns:  # an item per row, holding several images: a row per image from here on
        dataset, items = pairs.expand(task, dataset, where)
    columns = columns_for(task, layout, dataset)
    check_columns(task, dataset, columns, where)
    for name in columns.images:
        feature = dataset.features.get(name)
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    keys = row_keys(dataset, columns, layout, folder)

    data = TaskData(dataset=dataset, image_columns=columns.images, keys=keys, layout=layout, location=where, items=items)
    if needs_labels(task):
        if layout == "imagefolder":
            data.labels = labels_of(task, imagefolder_labels(task, dataset), keys)  # folder numbers get the range check too
        else:
            data.labels = labels_of(task, column(dataset, columns.target), keys)
        targets: list[Any] = data.labels
    else:
        data.captions = captions_of(task, caption_values(task, dataset, columns), keys, columns.captions_are_lines)
        data.blank_captions = sum(not c.strip() for caps in data.captions for c in caps)
        targets = data.captions
        total = sum(len(c) for c in data.captions)
        if limit is None and src.num_captions is not None and total != src.num_captions:
            raise UserError(
                f"task {task.name}: {where} has {total} captions but the card expects {src.num_captions}; "
                "use the complete copy or fix source.num_captions"
            )

    if src.metadata_fields:
        data.metadata = metadata_of(task, dataset, columns, keys)
        # Metadata change what group metrics say, so they are part of the content.
        targets = [[target, *values] for target, *values in zip(targets, *data.metadata.values())]

    if src.group_column:
        data.groups = groups_of(task, column(dataset, src.group_column), keys)
        targets = [[target, group] for target, group in zip(targets, data.groups)]
    if src.crop_column:
        data.crops = crops_of(task, column(dataset, src.crop_column), keys)
        check_uncropped(task, data, where)

    hashes = data.image_sha256 = data.image_hashes(cache, progress, f"Fingerprinting {task.name}")
    if items is not None:  # which images pair with which: part of the content (keys are not)
        partners: list[Any] = [None] * len(targets)
        for _, rows in items:
            for r in rows:
                partners[r] = [hashes[q] for q in rows]
        targets = [[target, item] for target, item in zip(targets, partners)]
    data.fingerprint = content_fingerprint(hashes, targets)
    data.order_fingerprint = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return data


def check_uncropped(task: TaskSpec, data: TaskData, where: str, probes: int = 64) -> None:
    """Refuse a copy whose images are already cropped to their boxes (they would be cropped twice): on such a copy
    most boxes, in the whole image's coordinates, reach past the small image. Probes evenly spaced rows' headers.

    Raises:
        UserError: most probed boxes reach more than a pixel past their image.
    """
    from vtde_bench.data.rows import _as_bytes, _first
    from vtde_bench.imaging import image_size

    assert data.crops is not None
    rows = sorted({i * len(data) // probes for i in range(min(probes, len(data)))})
    images = data.dataset.select_columns(list(data.image_columns))  # the rows' other columns are not read
    outside = 0
    for i in rows:
        value = _first([images[i][c] for c in data.image_columns])
        width, height = image_size(_as_bytes(value, data.keys[i], data.image_columns))
        x, y, w, h = data.crops[i]
        outside += x + w > width + 1 or y + h > height + 1
    if outside * 2 > len(rows):
        raise UserError(f"task {task.name}: {outside} of {len(rows)} probed crop boxes reach past their image at {where}: "
                        "its images look cropped already; use a copy that keeps the whole images, or drop "
                        "source.crop_column from the card")


def local_copy(task: TaskSpec, data_dir: str | Path | None) -> tuple[Path | None, str]:
    """(folder, layout) of the copy a task reads: `data_dir/<name>/`, the card's own path, or (None, "hub").

    Raises:
        UserError: `data_dir` is given but holds no copy of the task.
    """
    src = task.source
    own = task.kind.needs == "instances"  # such a copy is the source's own files, in no layout of `LAYOUTS`
    if data_dir is not None and (Path(data_dir) / task.name).exists():
        folder = Path(data_dir) / task.name
        return folder, INSTANCES if own and folder.is_dir() else ORIGINAL if original_file(task, folder) else local_layout(folder)
    if src.path is not None:
        return src.path, (INSTANCES if own and src.path.is_dir() else ORIGINAL if original_file(task, src.path)
                          else local_layout(src.path, src.format))
    if data_dir is not None:
        raise UserError(
            f"task {task.name}: no local copy at {Path(data_dir) / task.name}; "
            f"run 'vtde-bench download --tasks {task.name} --to {data_dir}' or drop --data-dir"
        )
    return None, "hub"


def bind_task(task: TaskSpec, data_dir: str | Path | None = None) -> TaskSpec:
    """The task with what its card takes from the source's own root files (a webdataset's `classnames.txt`)
    read from the copy it will load: the local one, or the hub repo at the card's revision."""
    folder, _ = local_copy(task, data_dir)
    if task.kind.needs == "instances":
        return task

    def read(filename: str) -> str | None:
        if folder is not None:
            path = folder / filename
            return path.read_text(encoding="utf-8") if path.is_file() else None
        return _hub_text(task, filename)

    return task.kind.bind(task, read, str(folder) if folder is not None else task.source.describe())


def _hub_text(task: TaskSpec, filename: str) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(task.source.hub, filename, repo_type="dataset", revision=task.source.revision)
    except EntryNotFoundError:
        return None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise UserError(f"task {task.name}: cannot read {filename} of {task.source.describe()} ({str(e).splitlines()[0]}); "
                        f"check the network, or download the task and pass --data-dir") from None
    return Path(path).read_text(encoding="utf-8")


def check_local_classnames(task: TaskSpec, folder: Path, progress: Progress) -> None:
    """A CLIP_benchmark copy carries its own classnames.txt: the card's win, but they must agree in number."""
    path = folder / "classnames.txt"
    if not needs_labels(task) or not path.is_file() or getattr(task, "from_source", ()) or getattr(task, "match_source", False):
        return  # bind_task read this file already
    theirs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(theirs) != len(task.classnames):
        raise UserError(
            f"task {task.name}: {path} lists {len(theirs)} classes but the card has {len(task.classnames)}; "
            "this copy is of another dataset or version"
        )
    if tuple(theirs) != task.classnames:
        progress.note(f"{task.name}: {path} words some class names differently; using the card's class names")
