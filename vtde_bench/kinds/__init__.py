"""Kinds of evaluation: one object per kind, registered once and looked up by a task card's `type`.

A kind owns everything that differs between kinds of evaluation: the fields and tables of its
cards and the spec they parse into, what it needs from the data (`NEEDS`: labels or captions),
how it scores embeddings, the per-sample table it writes, the statistic the bootstrap resamples,
its metrics (names, display labels, direction), its default main metric, what of its spec enters
a run's profile, and how other tools' result files name its metrics. No module outside this
package names a metric or branches on a kind: they ask the kind.

Zero-shot classification, retrieval, visual associations (WinoGAViL), linear probes, caption selection
(SugarCrepe, ARO) and paired matching (Winoground) are built in. Another kind is a `Kind` subclass whose
instance is passed to `register_kind`, or named in the `vtde_bench.kinds` entry-point group of an
installed package (``toy = my_package.kinds:KIND``), which the command line loads on first use.

This package imports neither torch nor datasets; a kind imports them inside the methods that score.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from vtde_bench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from vtde_bench.data import TaskData
    from vtde_bench.embedding import ImageEmbeddings
    from vtde_bench.evaluators import Context, Scores
    from vtde_bench.encoders.base import Embedder
    from vtde_bench.spec import Card, TaskSpec

ENTRY_POINTS = "vtde_bench.kinds"
# What the data loader can give a kind: each row's class index, or its captions; or instances over the rows
# (`data.instances`: a text, candidate rows and the right ones among them).
NEEDS = ("labels", "captions", "instances")


@dataclass(frozen=True)
class Metric:
    """One metric of a kind. Values are fractions in [0, 1]."""

    name: str  # as in result files: "acc1"
    label: str  # a column header that fits a terminal: "acc1", "I→T R@5"
    higher_is_better: bool = True


class Kind:
    """A kind of evaluation. Subclasses set the class attributes and implement `score` and `statistic`."""

    type: ClassVar[str]  # the card's `type`
    title: ClassVar[str]  # what its tables are called: "zeroshot classification"
    short: ClassVar[str]  # its leaderboard average is "<short> avg"
    needs: ClassVar[str]  # what the data loader gives it (`NEEDS`): "labels" (with the spec's `classnames`), "captions", "instances"
    metrics: ClassVar[tuple[Metric, ...]]
    default_main_metric: ClassVar[str]
    source_fields: ClassVar[dict[str, type]] = {}  # card [source] keys of this kind, beside the common ones
    source_defaults: ClassVar[dict[str, Any]] = {}  # their values when a card leaves them out
    tables: ClassVar[dict[str, dict[str, type]]] = {}  # card tables of this kind ([prompts]): name → allowed keys
    required_tables: ClassVar[tuple[str, ...]] = ()
    identity: ClassVar[tuple[str, ...]] = ()  # per-sample columns that, with the image, tell one query from another
    clip_benchmark_task: ClassVar[str | None] = None  # the `task` of CLIP_benchmark's result files of this kind
    # The Hub's task (type id, name) for a model card's model-index; "other" where the Hub has none for the kind.
    hub_task: ClassVar[tuple[str, str]] = ("other", "Other")
    clip_benchmark_metrics: ClassVar[dict[str, str]] = {}  # their metric-name prefixes → ours

    # ------------------------------------------------------------------ cards

    def spec(self, card: "Card", common: dict[str, Any], tables: dict[str, dict[str, Any]]) -> "TaskSpec":
        """The spec of a card of this kind: `common` holds the fields every kind has, `tables` this kind's tables."""
        from vtde_bench.spec import TaskSpec

        return TaskSpec(**common)

    def source_values(self, card: "Card", src: dict[str, Any]) -> dict[str, Any]:
        """`Source` fields from the kind's own [source] keys, with their defaults (lists of names become tuples)."""
        values = {**self.source_defaults, **{k: src[k] for k in self.source_fields if k in src}}
        for key, value in values.items():
            if isinstance(value, list):
                if not value or not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
                    raise card.fail(f"source.{key}", f"must list distinct column names, got {value!r}")
                values[key] = tuple(value)
        return values

    def metric_names(self, spec: "TaskSpec") -> tuple[str, ...]:
        """The metrics a task of this kind reports (a kind may drop some for a spec, as acc5 with under 5 classes)."""
        return tuple(m.name for m in self.metrics)

    def bind(self, spec: "TaskSpec", read: Callable[[str], str | None], where: str) -> "TaskSpec":
        """The spec with what its card takes from the source's own files filled in; `read(name)` gives the text of
        a file at the source's root (`where`: the copy's folder or hub id), or None. Called before the data load;
        most kinds take nothing."""
        return spec

    def splits(self, spec: "TaskSpec") -> tuple[str, ...]:
        """The splits of the source a task reads (what `download` fetches): the card's, for most kinds."""
        return (spec.source.split,)

    def image_embedder(self, spec: "TaskSpec", model: "Embedder") -> Any:
        """What embeds the task's images: the model, for most kinds (a probe of pre-projection features wraps it)."""
        return model

    def configure(self, spec: "TaskSpec", options: Any) -> "TaskSpec":
        """The spec with what the run's options (`RunOptions`) change in it (a probe's --shots); most kinds take
        nothing. Called before everything else, so the profile holds it."""
        return spec

    def profile(self, spec: "TaskSpec") -> dict[str, str | None]:
        """What of the spec, beyond the common card fields, changes numbers (digests of lists): for the run's profile."""
        return {}

    # ------------------------------------------------------------------ scoring

    def score(self, spec: "TaskSpec", model: "Embedder", data: "TaskData", images: "ImageEmbeddings",
              context: "Context") -> "Scores":
        """Metrics and the per-sample table from the task's image embeddings (texts are embedded here, with
        `evaluators.embed_distinct_texts` and the context's options, cache and progress)."""
        raise NotImplementedError

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable[[Any], dict[str, Any]]]:
        """(number of units, statistic) for the bootstrap of these metrics from a per-sample table of this kind.

        The statistic maps (B, n) unit indices to {metric: (B,) values}; units are taken in image-content
        order (`bootstrap.in_content_order`), so the same data in any layout gives the same intervals.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ other tools' files

    def import_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics named as another tool names them (CLIP_benchmark), in our names."""
        out = {}
        for key, value in metrics.items():
            for theirs, ours in self.clip_benchmark_metrics.items():
                if key.startswith(theirs):
                    key = ours + key[len(theirs):]
                    break
            out[key] = value
        return out

    def __repr__(self) -> str:
        return f"<kind {self.type}>"


_KINDS: dict[str, Kind] = {}
_plugins_loaded = False


def register_kind(kind: Kind) -> Kind:
    """Register a kind under its `type` (registering the same object again is a no-op).

    Raises:
        ValueError: another kind has that type, or the kind's default main metric is not one of its metrics.
    """
    names = [m.name for m in kind.metrics]
    if kind.default_main_metric not in names or len(set(names)) != len(names):
        raise ValueError(f"kind {kind.type!r}: metric names must be unique and hold the default main metric")
    if kind.needs not in NEEDS:
        raise ValueError(f"kind {kind.type!r}: needs must be one of {NEEDS}, not {kind.needs!r}")
    other = _KINDS.get(kind.type)
    if other is not None and other is not kind:
        raise ValueError(f"a kind of type {kind.type!r} is registered already ({other!r})")
    _KINDS[kind.type] = kind
    return kind


def _load_plugins() -> None:
    """Register the kinds that installed packages name in the `vtde_bench.kinds` entry-point group, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS):
        try:
            kind = point.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin is the user's to fix, with its name
            raise UserError(f"the task kind plugin {point.name!r} ({point.value}) failed to load ({type(e).__name__}: {e}); "
                            "fix or uninstall the package that provides it") from None
        register_kind(kind() if isinstance(kind, type) else kind)


def get_kind(type_: str) -> Kind:
    """The kind registered under a card's `type`.

    Raises:
        UserError: no such kind (with a did-you-mean).
    """
    if type_ not in _KINDS:
        _load_plugins()
    if type_ not in _KINDS:
        hint = difflib.get_close_matches(str(type_), list(_KINDS), n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else f"known kinds: {', '.join(_KINDS)}"
        raise UserError(f"unknown task type {type_!r}; {fix}")
    return _KINDS[type_]


def find_kind(type_: str) -> Kind | None:
    """The kind of that type, or None (a result file of a kind whose plugin is not installed)."""
    try:
        return get_kind(type_)
    except UserError:
        return None


def all_kinds() -> list[Kind]:
    """Every registered kind, built-in ones first, in registration order."""
    _load_plugins()
    return list(_KINDS.values())


def metric(name: str) -> Metric | None:
    """The definition of a metric by name, from whichever kind reports it."""
    for kind in all_kinds():
        for m in kind.metrics:
            if m.name == name:
                return m
    return None


def metric_label(name: str) -> str:
    """A metric's short display label (its name when no kind defines it)."""
    found = metric(name)
    return found.label if found is not None else name


def kind_of_metrics(names: set[str] | list[str]) -> Kind | None:
    """The kind whose metrics include all these names (for rows that name no type, as published numbers)."""
    names = set(names)
    for kind in all_kinds():
        if names <= {m.name for m in kind.metrics}:
            return kind
    return None


def kind_of_clip_benchmark_task(task: str) -> Kind | None:
    """The kind of CLIP_benchmark's result files whose `task` is this."""
    return next((k for k in all_kinds() if k.clip_benchmark_task == task), None)


from vtde_bench.kinds import association, caption_selection, classification, linear_probe, paired_matching, retrieval  # noqa: E402, F401
