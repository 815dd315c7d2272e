"""Items that hold several images, each with its own caption (Winoground: image_0 with caption_0, image_1 with
caption_1): each item becomes one row per image, in column order, and `TaskData.items` ties the rows back together.

The images keep their stored bytes (the columns are read undecoded) and each row's caption is its column's text, so
the rows are embedded and fingerprinted like any other task's.
"""

from __future__ import annotations

from typing import Any

from vtde_bench.errors import UserError

IMAGE, CAPTION, ITEM = "image", "caption", "__item__"


def expand(task: Any, dataset: Any, where: str) -> tuple[Any, list[tuple[str, tuple[int, ...]]]]:
    """(the rows, one per image of each item, in item then column order; each item's key and its rows).

    Raises:
        UserError: a missing column, a caption that is not text, or a card whose image and caption columns differ
            in number.
    """
    import datasets

    src = task.source
    images, captions = src.image_columns, src.caption_columns
    if len(images) < 2 or len(images) != len(captions):
        raise UserError(f"task {task.name}: source.image_columns and source.caption_columns must list the same number "
                        f"of columns, at least two (each image's caption), got {len(images)} and {len(captions)}")
    for name in (*images, *captions, *([src.key_column] if src.key_column else [])):
        if name not in dataset.column_names:
            raise UserError(f"task {task.name}: {where} has no column '{name}'; it has {', '.join(dataset.column_names)}")
    for name in images:
        if isinstance(dataset.features[name], datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    keys = [str(k) for k in dataset[src.key_column]] if src.key_column else [str(i) for i in range(len(dataset))]
    if len(set(keys)) != len(keys):
        raise UserError(f"task {task.name}: two items of {where} share the key {_repeated(keys)!r}; "
                        "set source.key_column to a column that tells them apart")
    rows: dict[str, list[Any]] = {IMAGE: [], CAPTION: [], ITEM: []}
    table = dataset.select_columns([*images, *captions])
    for key, row in zip(keys, table):
        for image, caption in zip(images, captions):
            text = row[caption]
            if not isinstance(text, str):
                raise UserError(f"task {task.name}: item {key!r} has {type(text).__name__} in column '{caption}', not "
                                "text; check source.caption_columns")
            rows[IMAGE].append(row[image])
            rows[CAPTION].append(text)
            rows[ITEM].append(f"{key}/{image}")
    features = datasets.Features({IMAGE: datasets.Image(decode=False), CAPTION: datasets.Value("string"),
                                  ITEM: datasets.Value("string")})
    expanded = datasets.Dataset.from_dict(rows, features=features)
    k = len(images)
    return expanded, [(key, tuple(range(i * k, (i + 1) * k))) for i, key in enumerate(keys)]


def _repeated(keys: list[str]) -> str:
    seen: set[str] = set()
    return next(k for k in keys if k in seen or seen.add(k))
