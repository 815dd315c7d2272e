"""Task cards: TOML files parsed into frozen, validated specs, and the registry.

A card is data, never code: it is read with `tomllib`, unknown keys are
rejected, every field is type-checked, and the files it names must lie inside
the card's own folder. The fields every card has are read here; the card's
`type` names its kind (`vtde_bench.kinds`), which reads its own fields and
tables into its spec. This module imports neither torch nor datasets, so
`vtde-bench tasks` stays instant.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from vtde_bench.errors import UserError
from vtde_bench.kinds import Kind, all_kinds, get_kind
from vtde_bench.spec import SORTED_FOLDERS, Card, Original, Source, Task, TaskSpec, tomllib

__all__ = ["SORTED_FOLDERS", "Group", "Source", "Task", "TaskSpec", "groups", "load_card", "load_tasks", "registry", "tasks_dir"]


# ----------------------------------------------------------------------------- card parsing

_TOP_KEYS = {"name": str, "type": str, "version": int, "description": str, "main_metric": str,
             "hub_benchmark": str, "hub_benchmark_task": str}
_SOURCE_KEYS = {
    "hub": str,
    "revision": str,
    "config": str,
    "format": str,
    "path": str,
    "split": str,
    "image_column": str,
    "key_column": str,
    "num_samples": int,
    "metadata_fields": list,
    "unpinned": str,
    "original": dict,
}
_ORIGINAL_KEYS = {"file": str, "images": str, "image_field": str, "caption_fields": list}
COMMIT = re.compile(r"[0-9a-f]{40}")  # a full commit id: what a pinned hub source names
_FORMATS = ("auto", "parquet", "webdataset", "imagefolder", "arrow")
# A task's name becomes a file name (<output>/<model>/<name>.json, <data-dir>/<name>/): no separators, no leading dot.
_NAME = re.compile(r"\w[\w.-]*")


def _kind_of(card: Card) -> Kind:
    kind_type = card.require(card.data, "type")
    if not isinstance(kind_type, str):
        raise card.fail("type", f"must be str, got {type(kind_type).__name__} {kind_type!r}")
    try:
        return get_kind(kind_type)
    except UserError as e:
        raise card.fail("type", f"= {kind_type!r} names no kind of evaluation ({str(e).split('; ', 1)[-1]})") from None


def load_card(path: str | Path) -> TaskSpec:
    """Parse and validate one task card.

    Raises:
        UserError: the card is missing, not TOML, has an unknown or missing field, a
            wrong type, or names files that are missing or outside its folder.
    """
    card = Card(Path(path))
    kind = _kind_of(card)
    others = [k for k in all_kinds() if k is not kind]
    top = {k: v for k, v in card.data.items() if k != "source" and k not in kind.tables}
    card.check(top, _TOP_KEYS, kind=kind.type, elsewhere={t for k in others for t in k.tables})
    name = card.require(top, "name")
    if not _NAME.fullmatch(name):
        raise card.fail("name", f"= {name!r} may hold only letters, digits, '_', '.' and '-' (it names result files); rename the task")
    version = card.require(top, "version")
    if version < 1:
        raise card.fail("version", "must be a positive integer")

    src = card.table("source", {**_SOURCE_KEYS, **kind.source_fields}, required=True, kind=kind.type,
                     elsewhere={f for k in others for f in k.source_fields})
    if ("hub" in src) == ("path" in src):
        raise card.fail("source", "needs exactly one of 'hub' (a dataset id) or 'path' (a local folder)")
    if "hub" in src and "revision" not in src:
        raise card.fail("source.revision", "is missing; pin hub datasets to a commit sha so results are reproducible")
    unpinned = src.get("unpinned")
    if unpinned is not None and ("hub" not in src or not unpinned.strip()):
        raise card.fail("source.unpinned", "says why a hub source's revision is a branch, not a commit: it needs "
                        "source.hub and a reason")
    if "hub" in src and unpinned is None and not COMMIT.fullmatch(src["revision"]):
        raise card.fail("source.revision", f"= {src['revision']!r} is not a full 40-hex commit; pin the commit, or, where "
                        "none can be verified, set source.unpinned to say why (runs then record the commit they resolve)")
    fmt = src.get("format", "auto")
    if fmt not in _FORMATS:
        raise card.fail("source.format", f"must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    data_path = None
    if "path" in src:
        data_path = Path(src["path"])
        if not data_path.is_absolute():
            data_path = (card.path.parent / data_path).resolve()
    num_samples = card.require(src, "num_samples", "source.")
    if num_samples < 1:
        raise card.fail("source.num_samples", "must be at least 1")
    metadata_fields = src.get("metadata_fields", [])
    if not all(isinstance(f, str) and f for f in metadata_fields) or len(set(metadata_fields)) != len(metadata_fields):
        raise card.fail("source.metadata_fields", f"must list distinct field names, got {metadata_fields!r}")
    original = None
    if "original" in src:
        table = src["original"]
        card.check(table, _ORIGINAL_KEYS, prefix="source.original.")
        fields = card.require(table, "caption_fields", "source.original.")
        if not fields or not all(isinstance(f, str) and f for f in fields):
            raise card.fail("source.original.caption_fields", f"must list the records' caption fields, got {fields!r}")
        named = {key: card.require(table, key, "source.original.") for key in ("file", "images", "image_field")}
        for key in ("file", "images"):
            if Path(named[key]).is_absolute() or ".." in Path(named[key]).parts:
                raise card.fail(f"source.original.{key}", f"= {named[key]!r} must name a path inside the copy's folder")
        original = Original(**named, caption_fields=tuple(fields))
    source = Source(
        split=card.require(src, "split", "source."),
        original=original,
        image_column=src.get("image_column", "image"),
        num_samples=num_samples,
        hub=src.get("hub"),
        revision=src.get("revision"),
        config=src.get("config"),
        format=fmt,
        path=data_path,
        key_column=src.get("key_column"),
        metadata_fields=tuple(metadata_fields),
        unpinned=unpinned,
        **kind.source_values(card, src),
    )
    tables = {t: card.table(t, allowed, required=t in kind.required_tables) for t, allowed in kind.tables.items()}
    if ("hub_benchmark" in top) != ("hub_benchmark_task" in top):
        raise card.fail("hub_benchmark", "and hub_benchmark_task go together: a registered Hub benchmark dataset and the "
                        "id of its task (as its eval.yaml names it)")
    common = dict(name=name, version=version, type=kind.type, kind=kind, source=source, card_path=card.path.resolve(),
                  description=top.get("description", ""), main_metric=kind.default_main_metric,
                  hub_benchmark=(top["hub_benchmark"], top["hub_benchmark_task"]) if "hub_benchmark" in top else None)
    task = kind.spec(card, common, tables)
    if "main_metric" in top:
        if top["main_metric"] not in task.metrics:
            raise card.fail("main_metric", f"= {top['main_metric']!r} is not one of {', '.join(task.metrics)}")
        task = replace(task, main_metric=top["main_metric"])
    return task


# ----------------------------------------------------------------------------- registry


def tasks_dir() -> Path:
    """The folder of built-in cards: inside the package when installed, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "tasks", here.parent / "tasks"):
        if candidate.is_dir():
            return candidate
    raise UserError(f"the built-in task folder is missing (looked in {here / 'tasks'} and {here.parent / 'tasks'}); reinstall vtde-bench")


def registry() -> dict[str, Path]:
    """Built-in task names → card paths (every `tasks/*.toml` but `groups.toml`)."""
    cards: dict[str, Path] = {}
    for path in sorted(tasks_dir().glob("*.toml")):
        if path.name == "groups.toml":
            continue
        cards[path.stem] = path
    return cards


AGGREGATES = ("mean", "size-weighted")  # how a group's tasks average: plainly, or weighted by each task's num_samples
INCOMPLETE = ("unranked", "zero")  # a row missing a task: listed without rank or average, or the task counts as 0
_GROUP_KEYS = {"tasks": list, "aggregate": str, "incomplete": str, "description": str, "pending": list, "metrics": dict,
               "categories": dict, "columns": dict}


@dataclass(frozen=True)
class Group:
    """A named group of built-in tasks, from `tasks/groups.toml`, and how a leaderboard aggregates it."""

    name: str
    tasks: tuple[str, ...]
    aggregate: str = "mean"
    incomplete: str = "unranked"
    description: str = ""
    # Members with no built-in card yet: they count in the group's average, so rows without them have none.
    pending: tuple[str, ...] = ()
    # The score a member counts with in this group, where it is not its card's main metric (DataComp's
    # mean R@1 for retrieval); a result without that metric counts as missing.
    metrics: dict[str, str] = field(default_factory=dict)
    # Named means over subsets of the members (DataComp's "VTAB", "ImageNet dist. shifts"), each shown
    # only for a row that has every task of it.
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The name published tables give each member (DataComp's task names, open_clip's CSV headers), in their order.
    columns: dict[str, str] = field(default_factory=dict)

    def metric_for(self, task: str, main_metric: str) -> str:
        """The metric a member counts with here: the group's for it, else its own main metric."""
        return self.metrics.get(task) or main_metric

    @property
    def members(self) -> tuple[str, ...]:
        """Every task the group's average is over: the built-in ones, then the pending ones."""
        return self.tasks + self.pending


def groups() -> dict[str, Group]:
    """Named groups of tasks from `tasks/groups.toml`, each a table:

        [standard]
        tasks = ["cifar10", "cifar100", "imagenet1k", "flickr30k", "mscoco"]
        aggregate = "mean"         # or "size-weighted"
        incomplete = "unranked"    # or "zero"
        description = "..."
        pending = ["winogavil"]    # members with no card yet (optional)
        [standard.metrics]         # a member's score here, where not its card's main metric (optional)
        flickr30k = "mean_recall@1"
        [standard.categories]      # named means over some members (optional)
        Retrieval = ["flickr30k", "mscoco"]
        [standard.columns]         # the name published tables give a member (optional)
        flickr30k = "Flickr"

    Raises:
        UserError: the file is not TOML, or a group is not such a table of built-in task names.
    """
    path = tasks_dir() / "groups.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    cards = registry()
    out = {}
    for name, table in data.items():
        def fail(problem: str) -> UserError:
            return UserError(f"{path}: group '{name}' {problem}")

        if not isinstance(table, dict):
            raise fail(f"must be a table, like [{name}] with tasks = [...]")
        unknown = set(table) - set(_GROUP_KEYS)
        if unknown:
            raise fail(f"has unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(_GROUP_KEYS)}")
        members = table.get("tasks")
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m in cards for m in members):
            raise fail(f"must list names of built-in task cards in tasks = [...], got {members!r}")
        aggregate, incomplete = table.get("aggregate", "mean"), table.get("incomplete", "unranked")
        if aggregate not in AGGREGATES:
            raise fail(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        if incomplete not in INCOMPLETE:
            raise fail(f"incomplete must be one of {', '.join(INCOMPLETE)}, got {incomplete!r}")
        description = table.get("description", "")
        if not isinstance(description, str):
            raise fail("description must be text")
        pending = table.get("pending", [])
        if not all(isinstance(m, str) and _NAME.fullmatch(m) and m not in cards for m in pending):
            raise fail(f"pending must list task names that have no built-in card yet, got {pending!r}")
        everyone = [*members, *pending]
        metrics = table.get("metrics", {})
        if not all(isinstance(v, str) and t in everyone for t, v in metrics.items()):
            raise fail(f"metrics must map member tasks to metric names, got {metrics!r}")
        categories = table.get("categories", {})
        if not all(isinstance(v, list) and v and all(m in everyone for m in v) for v in categories.values()):
            raise fail(f"categories must map names to lists of member tasks, got {categories!r}")
        columns = table.get("columns", {})
        if not all(isinstance(v, str) and t in everyone for t, v in columns.items()) or len(set(columns.values())) != len(columns):
            raise fail(f"columns must map member tasks to distinct published names, got {columns!r}")
        out[name] = Group(name, tuple(members), aggregate, incomplete, description, tuple(pending), dict(metrics),
                          {k: tuple(v) for k, v in categories.items()}, dict(columns))
    return out


def load_tasks(names: "Sequence[str | Path | TaskSpec] | str | Path | TaskSpec") -> list[TaskSpec]:
    """Resolve registry names, group names and card paths into validated task specs (specs pass through).

    A task named twice (directly or through a group) is kept once, in first position.

    Raises:
        UserError: an unknown name (with a did-you-mean), a bad card, or two different cards with one name.
    """
    if isinstance(names, (str, Path, TaskSpec)):
        names = [names]
    cards = registry()
    known_groups = groups()
    tasks: list[TaskSpec] = []
    for item in names:
        if isinstance(item, TaskSpec):
            tasks.append(item)
            continue
        name = str(item)  # a pathlib.Path card is accepted, as in load_card
        if name.endswith(".toml") or Path(name).is_file():
            tasks.append(load_card(name))
        elif name in cards:
            tasks.append(load_card(cards[name]))
        elif name in known_groups:
            tasks.extend(load_card(cards[member]) for member in known_groups[name].tasks)
        else:
            choices = list(cards) + list(known_groups)
            hint = difflib.get_close_matches(name, choices, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else "run 'vtde-bench tasks' to list them"
            raise UserError(f"unknown task '{name}'; {fix} (or give the path of a .toml card)")
    unique: dict[str, TaskSpec] = {}
    for task in tasks:
        if task.name in unique and unique[task.name] != task:
            raise UserError(
                f"two different cards are named '{task.name}' ({unique[task.name].card_path} and {task.card_path}); "
                "results are filed by task name, so rename one"
            )
        unique.setdefault(task.name, task)
    return list(unique.values())
