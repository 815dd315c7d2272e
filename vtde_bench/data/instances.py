"""Tasks whose rows are instances over a shared pool of images (WinoGAViL: a cue, its candidate images, the
associated ones), read from a table of instances and a folder or zip archive of images named after them.

The layout is the source's own files, as its hub repo holds them (nlphuji/winogavil: `winogavil_dataset.csv`
and `winogavil_images.zip`, whose `winogavil_images/<name>.jpg` are the candidates): the table is read with
`datasets`' csv builder, the images with its imagefolder builder (from the archive as it is, or from a folder
it was extracted to). The task's `TaskData` rows are the distinct images its instances use, in name order,
each embedded once; `TaskData.instances` refers to them by row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtde_bench.data.rows import TaskData, content_fingerprint
from vtde_bench.errors import UserError
from vtde_bench.progress import NullProgress, Progress

if TYPE_CHECKING:
    from vtde_bench.cache import EmbeddingCache

LAYOUT = "instances"


@dataclass(frozen=True)
class Instance:
    """One instance: its key, its text, its candidate images and the right ones among them (rows of `TaskData`)."""

    key: str
    text: str
    candidates: tuple[int, ...]
    answers: tuple[int, ...]


def source_files(task: Any) -> list[str]:
    """The repo files the task reads: its table of instances and its images (archive or folder)."""
    return [task.instances_file, task.images]


def load_instances(task: Any, folder: Path | None, *, limit: int | None = None, progress: Progress | None = None,
                   cache: "EmbeddingCache | None" = None) -> TaskData:
    """Read the table and the images of `task` from `folder` (a local copy), or from its hub repo at its revision.

    `limit` keeps the first N instances of the table, and the images they use.

    Raises:
        UserError: a missing file, column or image; a candidate list that is not a JSON list of names, an answer
            that is not a candidate; another number of instances than the card states.
    """
    import datasets

    progress = progress or NullProgress()
    src = task.source
    where = str(folder) if folder is not None else src.describe()
    table_file, image_files = _files(task, folder)
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset("csv", data_files={"test": [table_file]}, split="test")
        images = datasets.load_dataset("imagefolder", data_files={"test": image_files}, split="test")
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:
        raise UserError(f"task {task.name}: cannot read its instances or images at {where} ({e})") from None
    finally:
        datasets.enable_progress_bars()
    columns = {"text": task.text_column, "candidates": task.candidates_column, "answers": task.answers_column,
               "key": src.key_column}
    for role, name in columns.items():
        if name is not None and name not in table.column_names:
            raise UserError(f"task {task.name}: {task.instances_file} at {where} has no column '{name}' ({role}); "
                            f"it has {', '.join(table.column_names)}")
    if len(table) != src.num_samples:
        raise UserError(f"task {task.name}: {task.instances_file} at {where} holds {len(table)} instances but the card "
                        f"expects {src.num_samples}; use the complete copy or fix source.num_samples")
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be a positive number of rows")
        table = table.select(range(min(limit, len(table))))

    images = images.cast_column("image", datasets.Image(decode=False))
    by_name: dict[str, int] = {}
    for i, value in enumerate(images["image"]):
        path = Path(value["path"].split("::")[0])  # an archive member: zip://<member>::<archive>
        if path.suffix != task.image_suffix:
            continue
        name = path.stem
        if name in by_name:
            raise UserError(f"task {task.name}: two images are named {name!r} at {where}; keep one")
        by_name[name] = i
    keys = [str(k) for k in table[src.key_column]] if src.key_column else [str(i) for i in range(len(table))]
    raw = [(key, text, _names(task, key, "candidates", c), _names(task, key, "answers", a))
           for key, text, c, a in zip(keys, table[task.text_column], table[task.candidates_column], table[task.answers_column])]
    used = sorted({name for _, _, candidates, _ in raw for name in candidates})
    missing = [n for n in used if n not in by_name]
    if missing:
        raise UserError(f"task {task.name}: {len(missing)} candidate image(s) are not among the images at {where} "
                        f"(e.g. {missing[0]!r}, {missing[0]}{task.image_suffix}); use the complete archive")
    row = {name: i for i, name in enumerate(used)}
    instances = []
    for key, text, candidates, answers in raw:
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"task {task.name}: instance {key!r} has no text in column '{task.text_column}'")
        wrong = [a for a in answers if a not in candidates]
        if wrong or not answers or len(set(candidates)) != len(candidates):
            problem = f"answer {wrong[0]!r} is not a candidate" if wrong else "no answer" if not answers else "a repeated candidate"
            raise UserError(f"task {task.name}: instance {key!r} has {problem}; check the instances file")
        instances.append(Instance(key, text, tuple(row[c] for c in candidates), tuple(row[a] for a in answers)))

    dataset = images.select([by_name[n] for n in used])
    data = TaskData(dataset=dataset, image_columns=("image",), keys=used, layout=LAYOUT, location=where)
    data.instances = instances
    hashes = data.image_sha256 = data.image_hashes(cache, progress, f"Fingerprinting {task.name}")
    # The images by content and name, and the instances over them by name: any order, the same fingerprint.
    described = sorted(json.dumps([i.key, i.text, sorted(used[c] for c in i.candidates), sorted(used[a] for a in i.answers)],
                                  ensure_ascii=False) for i in instances)
    data.fingerprint = hashlib.sha256((content_fingerprint(hashes, used) + "\n" + "\n".join(described)).encode()).hexdigest()
    data.order_fingerprint = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return data


def _files(task: Any, folder: Path | None) -> tuple[str, list[str]]:
    """The table's file and the image files (an archive, or a folder's images), local or on the hub."""
    src = task.source
    if folder is None:
        base = f"hf://datasets/{src.hub}@{src.revision}"
        return f"{base}/{task.instances_file}", [f"{base}/{task.images}"]
    table = folder / task.instances_file
    if not table.is_file():
        raise UserError(f"task {task.name}: {folder} has no {task.instances_file}; "
                        f"run 'vtde-bench download --tasks {task.name}' or copy the source's files there")
    archive, extracted = folder / task.images, folder / Path(task.images).stem
    if archive.is_file():
        return str(table), [str(archive)]
    files = sorted(str(p) for p in extracted.rglob(f"*{task.image_suffix}") if p.is_file()) if extracted.is_dir() else []
    if not files:
        raise UserError(f"task {task.name}: {folder} has neither {task.images} nor its images extracted to "
                        f"{extracted.name}/; copy the source's image archive there")
    return str(table), files


def _names(task: Any, key: str, what: str, value: Any) -> list[str]:
    """A cell holding a JSON list of image names (the source's own encoding: '["eagle", "ash"]')."""
    try:
        names = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"task {task.name}: instance {key!r} has {what} {value!r}, not a JSON list of image names")
    return names
