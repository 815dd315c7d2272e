"""What a task card is, once read: its source, its spec, and the reader of card fields.

The fields every card has are here (`Source`, `TaskSpec`); a kind with fields of its own
subclasses `TaskSpec` and reads them with `Card`. `vtde_bench.tasks` parses whole cards and
keeps the registry. This module imports nothing of vtde-bench but its errors.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from vtde_bench.errors import UserError


@dataclass(frozen=True)
class Original:
    """A source's original files, which a local copy may hold instead of the hub copy's (SugarCrepe's
    `data/<subset>.json` beside COCO's `val2017/`): a JSON file of records (a list, or an object keyed by item id) and
    a folder of the images they name. They are read into the card's own columns, so the rest of the card holds."""

    file: str  # the JSON file, at the copy's root or under data/
    images: str  # the folder of images, relative to the copy
    image_field: str  # the record field naming an item's image file, relative to `images`
    caption_fields: tuple[str, ...]  # the record fields of its captions, in the card's order (the right one first)


@dataclass(frozen=True)
class Source:
    """Where a task's data comes from: a hub dataset at a pinned revision, or a local folder.

    Column names apply to the source's own layout (hub, parquet, `save_to_disk`);
    the webdataset and imagefolder layouts have fixed column conventions. The
    label, caption, image-list, crop and group fields are set by the kinds whose cards have them.
    """

    split: str
    image_column: str
    num_samples: int
    hub: str | None = None
    revision: str | None = None
    config: str | None = None
    format: str = "auto"
    path: Path | None = None
    key_column: str | None = None
    label_column: str | None = None  # kinds that need labels
    caption_column: str | None = None  # kinds that need captions
    # Imagefolder copies: the folder name of each class in label order, or "sorted" (folders in sorted order are
    # the classes, torchvision's ImageFolder rule). None: folders are named after the classes, or are class indices.
    class_folders: tuple[str, ...] | str | None = None
    num_captions: int | None = None  # total captions, checked on load when given
    # Captions read from several columns, one per column, in order: a caption-selection item's candidates (the right
    # one first: ARO's true_caption, false_caption), or the caption of each of a paired item's images.
    caption_columns: tuple[str, ...] = ()
    # A paired item's images, one per column (Winoground's image_0, image_1): each becomes a row of the task's data.
    image_columns: tuple[str, ...] = ()
    # A column holding each row's box {x, y, w, h} in pixels: the image is cropped to it before preprocessing (ARO's
    # VG-Relation and VG-Attribution, whose copies keep the whole Visual Genome image and the box).
    crop_column: str | None = None
    # A column naming each row's group (a string, or a list of strings joined with "_": ARO's attribute pair), for a
    # kind's per-group metrics.
    group_column: str | None = None
    original: Original | None = None  # the source's original files, where a local copy holds them
    # Per-image metadata the task's metrics group by (WILDS' metadata_fields): the integers of each sample's .npy
    # member in this order (webdataset), or the columns of these names (other layouts).
    metadata_fields: tuple[str, ...] = ()
    # Why no commit could be verified, for a hub source whose `revision` is then a branch or tag: a run and a
    # download resolve it to a commit and record that (`DatasetRecord.resolved_commit`).
    unpinned: str | None = None

    @property
    def pinned(self) -> bool:
        return self.hub is None or self.unpinned is None

    def describe(self) -> str:
        if self.hub is not None:
            rev = f"@{self.revision[:12]}" if self.revision else ""
            return f"{self.hub}{rev}" + ("" if self.pinned else " (unpinned)")
        return str(self.path)


ANY_KEY = "*"  # in a table's allowed keys: any key, of this type (a table of named entries, as [metrics.NAME])
EMPTY_ENTRY = '""'  # a line of a card's list file that stands for the empty string
SORTED_FOLDERS = "sorted"  # `class_folders = "sorted"`: torchvision's ImageFolder rule, asked for by the card


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A validated task card, with the kind its `type` names. A kind with fields of its own (class names,
    templates) subclasses it."""

    name: str
    version: int
    type: str
    # The `vtde_bench.kinds.Kind` registered under `type`, which read the card and scores and resamples the task.
    # (Typed loosely: the kinds sit above this module, which must not import them.)
    kind: Any = field(repr=False, compare=False)
    source: Source
    card_path: Path | None = None
    description: str = ""
    main_metric: str = ""
    # (dataset id, task id) of a registered Hub benchmark this task is, for `export --format eval-results`.
    hub_benchmark: tuple[str, str] | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.kind.metric_names(self)


Task = TaskSpec


class Card:
    """Reads one card's tables, turning every problem into a `UserError` naming the file and field."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"task card {path} does not exist; give a registry name or the path of a .toml card")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"task card {path}: not valid TOML ({e}); fix the syntax") from None

    def fail(self, field: str, problem: str) -> UserError:
        return UserError(f"task card {self.path}: field '{field}' {problem}")

    def table(self, name: str, allowed: dict[str, type], required: bool, *, kind: str = "",
              elsewhere: set[str] = frozenset()) -> dict[str, Any]:
        table = self.data.get(name)
        if table is None:
            if required:
                raise self.fail(name, "is missing; add a [" + name + "] table")
            return {}
        if not isinstance(table, dict):
            raise self.fail(name, "must be a table, like [" + name + "]")
        self.check(table, allowed, prefix=name + ".", kind=kind, elsewhere=elsewhere)
        return table

    def check(self, table: dict[str, Any], allowed: dict[str, type], prefix: str = "", *, kind: str = "",
              elsewhere: set[str] = frozenset()) -> None:
        """Every key known and of its type. `elsewhere`: keys other kinds have, which "do not apply" to `kind`."""
        for key, value in table.items():
            if key not in allowed and ANY_KEY not in allowed:
                if key in elsewhere:
                    raise self.fail(prefix + key, f"does not apply to a {kind} task (its fields here: {', '.join(allowed)}); remove it")
                hint = difflib.get_close_matches(key, list(allowed), n=1)
                extra = f"; did you mean '{prefix}{hint[0]}'?" if hint else f"; allowed: {', '.join(sorted(allowed))}"
                raise self.fail(prefix + key, "is not a known field" + extra)
            want = allowed.get(key, allowed.get(ANY_KEY))
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise self.fail(prefix + key, f"must be {want.__name__}, got {type(value).__name__} {value!r}")

    def require(self, table: dict[str, Any], key: str, prefix: str = "") -> Any:
        if key not in table:
            raise self.fail(prefix + key, "is missing")
        return table[key]

    def inner_file(self, field: str, relative: str) -> Path:
        """A data file named by the card, which must stay inside the card's folder (no path traversal)."""
        root = self.path.parent.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise self.fail(field, f"= {relative!r} points outside the card's folder {root}; keep data files beside the card")
        if not target.is_file():
            raise self.fail(field, f"= {relative!r}: no such file {target}")
        return target

    def lines(self, field: str, relative: str, *, unique: bool = True) -> tuple[str, ...]:
        target = self.inner_file(field, relative)
        try:
            text = target.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise self.fail(field, f"= {relative!r}: {target} is not UTF-8 text") from None
        # Lines starting with '#' are comments (a file names its source there); blank lines are skipped, so an
        # entry that is published empty (CLIP_benchmark's CLEVR Distance class 3) is written EMPTY_ENTRY.
        lines = tuple("" if line.strip() == EMPTY_ENTRY else line.strip() for line in text.splitlines()
                      if line.strip() and not line.lstrip().startswith("#"))
        if not lines:
            raise self.fail(field, f"= {relative!r}: {target} is empty")
        if unique and len(set(lines)) != len(lines):
            duplicate = next(x for x in lines if lines.count(x) > 1)
            raise self.fail(field, f"= {relative!r}: {duplicate!r} appears twice in {target}")
        return lines
