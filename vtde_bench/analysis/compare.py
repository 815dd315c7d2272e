"""The regression gate: a candidate's results against a baseline's, metric by metric. Pure logic; reports in `render.compare`.

A metric regresses when baseline − candidate > tolerance (absolute, in percentage points). With
`paired=True` and both runs on the same dataset fingerprint, the per-sample files give a paired
bootstrap interval of candidate − baseline, and a metric regresses only when that interval also
lies entirely below zero: a drop the same images cannot tell from noise is "not significant".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from vtde_bench.results import OURS, TaskResult, load_rows, samples_path
from vtde_bench.errors import RunFailure, UserError
from vtde_bench.kinds import Kind, find_kind

REGRESSED, IMPROVED, OK, NOT_SIGNIFICANT = "regressed", "improved", "ok", "not significant"


@dataclass(frozen=True)
class MetricComparison:
    """One (task, metric). Scores and intervals are fractions; `delta` and `paired_interval` are percentage points."""

    task: str
    metric: str
    main: bool
    baseline: float
    candidate: float
    baseline_interval: tuple[float, float] | None
    candidate_interval: tuple[float, float] | None
    paired_interval: tuple[float, float] | None  # candidate − baseline, points
    verdict: str

    @property
    def delta(self) -> float:
        """candidate − baseline, in percentage points."""
        return 100 * (self.candidate - self.baseline)

    @property
    def regressed(self) -> bool:
        return self.verdict == REGRESSED


@dataclass
class Comparison:
    candidate: str  # model slugs
    baseline: str
    tolerance_points: float
    paired: bool
    rows: list[MetricComparison]
    notes: list[str] = field(default_factory=list)  # forced mismatches, tasks only the candidate has, unpaired tasks

    @property
    def regressions(self) -> list[MetricComparison]:
        return [r for r in self.rows if r.regressed]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


def resolve_one_model(paths: Sequence[str | Path] | str | Path, *, role: str, imported: bool = False) -> dict[str, TaskResult]:
    """Our own results under `paths`, which must all be of one model: task → record. With `imported` (a forced
    baseline), rows imported from elsewhere (open_clip's CSV, CLIP_benchmark, DataComp) are taken too.

    Raises:
        UserError: nothing found, an imported row (unless `imported`), several models, or a task twice.
    """
    records = load_rows(paths)
    where = " ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths))
    foreign = [r for r in records if r.source != OURS]
    if foreign and not imported:
        fix = ("compare a baseline of imported numbers only with --force: their protocols may differ from vtde-bench's"
               if role == "baseline" else "the candidate must be vtde-bench results")
        raise UserError(f"{role} {where} holds {foreign[0].source} rows ({foreign[0].model_name}); {fix}")
    if not records:
        raise UserError(f"no vtde-bench results in {role} {where}; run 'vtde-bench run' first")
    models = sorted({r.model_name for r in records})
    if len(models) > 1:
        raise UserError(f"{role} {where} holds results of {len(models)} models ({', '.join(models)}); name one model's folder")
    by_task: dict[str, TaskResult] = {}
    for r in records:
        if r.task_name in by_task:
            raise UserError(f"{role} has two results for task {r.task_name}: {by_task[r.task_name].path} and {r.path}; name one")
        by_task[r.task_name] = r
    return by_task


def _check_comparable(task: str, cand: TaskResult, base: TaskResult, *, force: bool, notes: list[str]) -> None:
    problems = []
    if cand.task_version != base.task_version:
        problems.append(f"task version {cand.task_version} vs baseline {base.task_version}")
    if cand.dataset_fingerprint != base.dataset_fingerprint:
        problems.append(f"dataset fingerprint {str(cand.dataset_fingerprint)[:8]} vs baseline {str(base.dataset_fingerprint)[:8]}"
                        + (" (a --limit run)" if cand.limited or base.limited else ""))
    settings = [evaluation_settings(r) for r in (cand, base)]
    for name in EVALUATION_SETTINGS:
        mine, theirs = (s.get(name) if s is not None else None for s in settings)
        if mine is not None and theirs is not None and mine != theirs:
            problems.append(f"{name} {mine} vs baseline {theirs}")
    if problems and not force:
        raise UserError(f"{task}: {'; '.join(problems)}; the runs are not comparable (rerun on the same data and "
                        "settings, or --force)")
    notes += [f"{task}: {p} (compared anyway: --force)" for p in problems]
    for role, record, found in (("candidate", cand, settings[0]), ("baseline", base, settings[1])):
        if found is None:
            notes.append(f"{task}: the {role}'s result holds no profile (an older vtde-bench): its settings are unknown")
    profiles = [r.run.profile for r in (cand, base)]
    if all(p is not None for p in profiles):
        for what, attr in (("image preprocessing", "image_preprocessing"), ("text preprocessing", "text_preprocessing")):
            if getattr(profiles[0], attr) != getattr(profiles[1], attr):
                notes.append(f"{task}: the checkpoints' {what} differs (their processors or tokenizers are not the same)")


# What a run chooses, as opposed to what its checkpoint is: two runs that differ in one measure different things.
EVALUATION_SETTINGS = ("precision", "text rule", "decoder")


def evaluation_settings(result: TaskResult) -> dict[str, str | None] | None:
    """A result's evaluation-time settings, from its profile; None for a result without one."""
    profile = result.run.profile
    if profile is None:
        return None
    return {"precision": profile.precision, "text rule": (profile.texts or {}).get("text_rule"),
            "decoder": (profile.images or {}).get("decoder")}


def _paired_intervals(task: str, cand: TaskResult, base: TaskResult, *, resamples: int) -> dict[str, list[float]]:
    """Paired bootstrap intervals of candidate − baseline, fractions, from the two per-sample files.

    Raises:
        UserError: a per-sample file is missing, or old files pair by keys that differ. RunFailure: one cannot be
            read, or they hold different queries.
    """
    import pandas as pd

    from vtde_bench.bootstrap import paired_difference_intervals

    tables = []
    for record in (cand, base):
        path = None if record.path is None else samples_path(record.path)
        if path is None or not path.is_file():
            raise UserError(f"{task}: no per-sample file beside {record.path}; --paired needs it (rerun, or compare without --paired)")
        try:
            tables.append(pd.read_parquet(path))
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise RunFailure(f"cannot read per-sample file {path} ({type(e).__name__}: {e}); rerun that evaluation") from None
    try:
        return paired_difference_intervals(_kind(task, base), tables[0], tables[1], list(base.metrics), resamples=resamples)
    except (ValueError, KeyError) as e:
        if not all("image_sha256" in t.columns for t in tables):
            # Written before per-sample files held image hashes: their rows pair only by key, which layouts name apart.
            raise UserError(
                f"{task}: the per-sample files pair by row key, and their keys differ (the same data in two layouts?); "
                "rerun both evaluations with --overwrite, so that their rows pair by image content") from None
        raise RunFailure(f"{task}: per-sample files {samples_path(cand.path)} and {samples_path(base.path)} do not match ({e})") from None


def _kind(task: str, record: TaskResult) -> Kind:
    kind = find_kind(record.task_type)
    if kind is None:
        raise UserError(f"{task}: its results are of kind {record.task_type!r}, which no installed package defines; "
                        "install the package that provides it")
    return kind


def _verdict(delta_points: float, tolerance: float, paired: tuple[float, float] | None, *, higher_is_better: bool = True) -> str:
    """The verdict on candidate − baseline (points), for a metric whose kind says which way is better."""
    if not higher_is_better:  # a drop is an improvement: judge the gain instead
        delta_points = -delta_points
        paired = None if paired is None else (-paired[1], -paired[0])
    delta_points = round(delta_points, 9)  # 0.5 − 0.495 is not "more than 0.5 points" because of a binary fraction
    if -delta_points > tolerance:
        return REGRESSED if paired is None or paired[1] < 0 else NOT_SIGNIFICANT
    if delta_points > tolerance:
        return IMPROVED if paired is None or paired[0] > 0 else NOT_SIGNIFICANT
    return OK


def compare(
    candidate: Sequence[str | Path] | str | Path,
    baseline: Sequence[str | Path] | str | Path,
    *,
    tolerance_points: float = 0.5,
    metrics: str = "main",
    paired: bool = False,
    force: bool = False,
    resamples: int = 1000,
) -> Comparison:
    """Compare a candidate's results with a baseline's, each a folder or files of exactly one model.

    Args:
        tolerance_points: how far (percentage points, absolute) a metric may drop before it regresses.
        metrics: "main" (each task's main metric) or "all" (every metric of the baseline).
        paired: use paired bootstrap intervals from the per-sample files where the dataset fingerprints match.
        force: compare even across task versions or dataset fingerprints.

    Raises:
        UserError: bad input (exit 2). RunFailure: a per-sample file that cannot be used (exit 3).
    """
    if not 0 <= tolerance_points < float("inf"):
        raise UserError("--tolerance must be a number of percentage points, 0 or more")
    if metrics not in ("main", "all"):
        raise UserError(f"--metrics must be 'main' or 'all', not {metrics!r}")
    cand = resolve_one_model(candidate, role="candidate")
    base = resolve_one_model(baseline, role="baseline", imported=force)
    missing = sorted(set(base) - set(cand))
    if missing:
        raise UserError(f"the candidate has no result for {', '.join(missing)}, which the baseline has; evaluate it on those tasks")
    notes = [f"{task}: only the candidate has it; not compared" for task in sorted(set(cand) - set(base))]
    rows: list[MetricComparison] = []
    for task in sorted(base):
        c, b = cand[task], base[task]
        if b.source != OURS:  # numbers imported from another tool (allowed with --force): nothing to check them by
            notes.append(f"{task}: the baseline is {b.source} numbers ({b.model_name}), not a vtde-bench run: the "
                         "protocols may differ (compared anyway: --force)")
        else:
            _check_comparable(task, c, b, force=force, notes=notes)
        names = [b.main_metric] if metrics == "main" else list(b.metrics)
        absent = [m for m in names if m not in c.metrics]
        if absent:
            raise UserError(f"{task}: the candidate's result has no {', '.join(absent)}; were they run with the same task card?")
        differences = None
        if paired and b.source != OURS:
            notes.append(f"{task}: an imported baseline has no per-sample file, so no paired interval")
        elif paired and c.dataset_fingerprint == b.dataset_fingerprint:
            differences = _paired_intervals(task, c, b, resamples=resamples)
        elif paired:
            notes.append(f"{task}: datasets differ, so no paired interval; verdicts use the tolerance alone")
        for name in names:
            interval = differences.get(name) if differences else None
            points = (100 * interval[0], 100 * interval[1]) if interval else None
            row = MetricComparison(task, name, name == b.main_metric, b.metrics[name], c.metrics[name],
                                   b.intervals.get(name), c.intervals.get(name), points, "")
            rows.append(_with_verdict(row, tolerance_points, find_kind(b.task_type)))
    return Comparison(next(iter(cand.values())).model_name, next(iter(base.values())).model_name, tolerance_points, paired,
                      rows, notes)


def _with_verdict(row: MetricComparison, tolerance: float, kind: Kind | None) -> MetricComparison:
    """The row with its verdict, in the direction the result's kind gives the metric (higher is better without one)."""
    definition = next((m for m in kind.metrics if m.name == row.metric), None) if kind is not None else None
    better_higher = definition.higher_is_better if definition is not None else True
    return replace(row, verdict=_verdict(row.delta, tolerance, row.paired_interval, higher_is_better=better_higher))
