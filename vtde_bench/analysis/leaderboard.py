"""The leaderboard: a models × tasks table of main scores, averages and ranks. Pure: builds, never prints
(`render.leaderboard` and `render.html` draw it).

Rules:
- A cell is the task's main metric (a fraction). Rows are ranked and averaged over one fixed task
  set: a group's tasks (`--group`), or else every task that one of our own full runs has. Averages
  are over that set: one per task type, and `average`, the mean over all of it (not of the type
  averages). A row missing any of those tasks has no average and no rank; it is listed in the
  flagged section with the tasks it misses (so one easy task never ranks above two hard ones).
- Our own results run with `--limit`, or on a task version or dataset fingerprint other than the
  majority of full runs of that task, are flagged: they go to a separate, unranked section, each
  with its reason. A model with both kinds gets a row in each section.
- Published and CLIP_benchmark rows are labelled by source and sorted by score with the rest, but
  take no rank: ranks compare only our own full runs, made with one protocol. Their tasks are cut
  to the columns of the results given, so they add context, not columns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Hashable, Sequence

from vtde_bench.errors import UserError
from vtde_bench.kinds import all_kinds, find_kind
from vtde_bench.results import OURS, PUBLISHED, ScoreRow

if TYPE_CHECKING:
    from vtde_bench.tasks import Group


@dataclass(frozen=True)
class Column:
    """One task column: its main metric is the value shown."""

    task: str
    task_type: str
    main_metric: str


@dataclass
class Row:
    """One model in one section. Scores, intervals and averages are fractions; rank is None when unranked."""

    model: str
    source: str
    model_path: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # task → main score
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # task → 95% interval of the main score
    averages: dict[str, float] = field(default_factory=dict)  # task type → mean main score
    average: float | None = None
    rank: int | None = None
    flags: list[str] = field(default_factory=list)  # why the row is not ranked ("task: reason")
    missing: list[str] = field(default_factory=list)  # tasks of the ranked set it has no result for
    categories: dict[str, float] = field(default_factory=dict)  # the group's categories this row has every task of

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]  # the ranked section (sorted by average) then the flagged one
    categories: list[str] = field(default_factory=list)  # the group's named means, in its order

    @property
    def ranked(self) -> list[Row]:
        return [r for r in self.rows if not r.flagged]

    @property
    def flagged(self) -> list[Row]:
        return [r for r in self.rows if r.flagged]

    @property
    def task_types(self) -> list[str]:
        """The kinds of the columns, in the order kinds were registered (built-in ones first)."""
        present = {c.task_type for c in self.columns} - {"pending"}  # a group's member with no card yet has no kind
        known = [k.type for k in all_kinds() if k.type in present]
        return known + sorted(present - set(known))


def _majority(values: Sequence[Hashable]) -> Hashable | None:
    """The most common value, or None when several tie for most common (there is no majority to compare with)."""
    counts = Counter(values).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def _flags(records: Sequence[ScoreRow]) -> dict[int, list[str]]:
    """For each of our own records (by id), why it cannot be ranked with the full runs; empty when it can."""
    ours = [r for r in records if r.source == OURS]
    full = [r for r in ours if not r.limited]
    reasons: dict[int, list[str]] = {}
    for task in {r.task_name for r in ours}:
        peers = [r for r in full if r.task_name == task]
        version = _majority([r.task_version for r in peers])
        data = _majority([r.dataset_fingerprint for r in peers])
        for r in (r for r in ours if r.task_name == task):
            why = [f"--limit {r.limit}"] if r.limited else []
            if peers and r.task_version != version:
                why.append(f"task version {r.task_version}" + (f" (others: {version})" if version is not None else " (no majority)"))
            if peers and not r.limited and r.dataset_fingerprint != data:  # a limited run's data is a subset anyway
                short = (r.dataset_fingerprint or "none")[:8]
                why.append(f"dataset {short}" + (f" (others: {str(data)[:8]})" if data is not None else " (runs disagree)"))
            reasons[id(r)] = [f"{task}: {w}" for w in why]
    return reasons


def _columns(records: Sequence[ScoreRow]) -> list[Column]:
    own = [r for r in records if r.source == OURS] or list(records)
    columns = []
    for task in {r.task_name for r in own}:
        here = [r for r in own if r.task_name == task]
        kind = _majority([r.task_type for r in here]) or here[0].task_type
        definition = find_kind(kind)
        default = definition.default_main_metric if definition is not None else here[0].main_metric
        columns.append(Column(task, kind, _majority([r.main_metric for r in here]) or default))
    order = {k.type: i for i, k in enumerate(all_kinds())}
    return sorted(columns, key=lambda c: (order.get(c.task_type, len(order)), c.task))


def _mean(score: dict[str, float], tasks: list[str], weights: dict[str, float]) -> float:
    """The mean of the tasks' scores, weighted by `weights` (1 where it has none)."""
    total = sum(weights.get(t, 1.0) for t in tasks)
    return sum(score[t] * weights.get(t, 1.0) for t in tasks) / total


def _task_set(records: Sequence[ScoreRow], columns: list[Column]) -> list[str]:
    """The tasks every ranked row must have: those of our own full runs (else of whatever is there)."""
    full = {r.task_name for r in records if r.source == OURS and not r.limited}
    if not full:
        full = {r.task_name for r in records if r.source != PUBLISHED} or {r.task_name for r in records}
    return [c.task for c in columns if c.task in full]


def build(records: Sequence[ScoreRow], *, group: "Group | None" = None) -> Leaderboard:
    """The leaderboard of `records` (our own results and any published or imported rows).

    Rows are ranked and averaged over one fixed task set: the group's tasks when given (only those
    are shown), else every task that one of our own full runs has. The group says how the set is
    averaged (`aggregate`: a plain mean, or weighted by each task's `num_samples`) and what becomes of a
    row missing a task (`incomplete`): "unranked", listed with the tasks it misses and no rank or
    average (the rule without a group), or "zero", the task counting as 0.

    Published rows count only on the tasks that the other records have; when there are no
    other records, all their tasks are shown.

    Raises:
        UserError: no records, or two different results for one model and task in one section.
    """
    if not records:
        raise UserError("no results to rank; run 'vtde-bench run' first or name result folders")
    non_published = [r for r in records if r.source != PUBLISHED]
    columns = _columns(non_published or records)
    weights: dict[str, float] = {}
    incomplete = "unranked"
    if group is not None:
        columns = _group_columns(group, records)
        required = [c.task for c in columns]
        if group.aggregate == "size-weighted":
            from vtde_bench.tasks import load_tasks

            weights = {spec.name: float(spec.source.num_samples) for spec in load_tasks(list(group.tasks))}
        incomplete = group.incomplete
    else:
        required = _task_set(records, columns)
    by_task = {c.task: c for c in columns}
    flags = _flags(records)
    rows: dict[tuple[str, str, bool], Row] = {}
    seen: dict[tuple[str, str, bool, str], ScoreRow] = {}
    lacking: dict[tuple[str, str], set[str]] = {}  # (source, model) → tasks whose results lack the column's metric
    for r in records:
        column = by_task.get(r.task_name)
        if column is not None and column.main_metric not in r.metrics:
            lacking.setdefault((r.source, r.model_name), set()).add(r.task_name)
        if column is None or column.main_metric not in r.metrics:
            continue
        why = flags.get(id(r), [])
        key = (r.source, r.model_name, bool(why))
        other = seen.setdefault((*key, r.task_name), r)
        if other is not r:
            if other.metrics == r.metrics and other.dataset_fingerprint == r.dataset_fingerprint:
                continue  # the same result found twice (a copy, or a folder and a file in it)
            raise UserError(f"two different results for {r.model_name} on {r.task_name}: {other.path} and {r.path}; name only one")
        row = rows.setdefault(key, Row(model=r.model_name, source=r.source, model_path=r.model_path))
        row.scores[r.task_name] = r.metrics[column.main_metric]
        if column.main_metric in r.intervals:
            row.intervals[r.task_name] = r.intervals[column.main_metric]
        row.flags += why
    for row in rows.values():
        row.missing = [t for t in required if t not in row.scores]
        for name, members in (group.categories.items() if group is not None else ()):
            if all(t in row.scores for t in members):
                row.categories[name] = _mean(row.scores, list(members), {})  # a plain mean, as DataComp's aggregate_scores.py
        if row.missing and incomplete == "unranked":
            if not row.flags:  # a row otherwise ranked (or sorted among the ranked) says what it lacks
                without = lacking.get((row.source, row.model), set())
                row.flags.append("missing " + ", ".join(f"{t} (no {by_task[t].main_metric})" if t in without else t
                                                         for t in row.missing))
            continue  # an average over another set of tasks compares with nothing: none
        score = {t: row.scores.get(t, 0.0) for t in required}  # "zero": a missing task counts as 0
        for kind in {c.task_type for c in columns}:
            of_kind = [c.task for c in columns if c.task_type == kind and c.task in required]
            if of_kind:
                row.averages[kind] = _mean(score, of_kind, weights)
        row.average = _mean(score, required, weights) if required else None

    def order(row: Row) -> tuple:
        return (row.average is None, -(row.average or 0.0), row.model)

    ranked = sorted((r for r in rows.values() if not r.flagged), key=order)
    flagged = sorted((r for r in rows.values() if r.flagged), key=order)
    previous, rank, position = None, 0, 0
    for row in ranked:
        if row.source != OURS:
            continue
        position += 1
        if row.average != previous:  # competition ranking: equal averages share a rank
            rank, previous = position, row.average
        row.rank = rank
    return Leaderboard(columns, ranked + flagged, list(group.categories) if group is not None else [])


def _group_columns(group: "Group", records: Sequence[ScoreRow]) -> list[Column]:
    """A group's columns: every member, built-in then pending, each scored by the group's metric for it where the
    group names one (else its card's main metric; a pending member's kind is that of its records, if any)."""
    from vtde_bench.tasks import load_tasks

    specs = {spec.name: spec for spec in load_tasks(list(group.tasks))}
    found = {c.task: c for c in _columns(records)}
    columns = []
    for task in group.members:
        spec = specs.get(task)
        kind = spec.type if spec is not None else (found[task].task_type if task in found else "pending")
        metric = group.metric_for(task, spec.main_metric if spec is not None else found[task].main_metric if task in found else "")
        columns.append(Column(task, kind, metric))
    return columns
