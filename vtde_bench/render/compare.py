"""Files a CI system reads from a `Comparison`: JUnit XML (one test case per task and metric) and a markdown summary.

Both are written atomically. Scores are shown in percent, deltas in percentage points.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vtde_bench.analysis.compare import NOT_SIGNIFICANT, Comparison, MetricComparison
from vtde_bench.files import atomic_write


def describe(row: MetricComparison, tolerance: float) -> str:
    """One line: baseline → candidate (percent), delta and paired interval (points), verdict."""
    text = f"{row.task} {row.metric}: baseline {100 * row.baseline:.2f}, candidate {100 * row.candidate:.2f}, delta {row.delta:+.2f} points"
    if row.paired_interval is not None:
        text += f" (paired 95% interval {interval_text(row.paired_interval)})"
    return f"{text}; tolerance {tolerance:g} points: {row.verdict}"


def junit_xml(comparison: Comparison) -> bytes:
    """A JUnit XML document: one `testsuite`, a `testcase` per (task, metric), a `failure` per regression."""
    cases = comparison.rows
    suites = ET.Element("testsuites", name="vtde-bench compare", tests=str(len(cases)),
                        failures=str(len(comparison.regressions)), errors="0", time="0")
    suite = ET.SubElement(suites, "testsuite", name=f"vtde-bench compare {comparison.candidate} vs {comparison.baseline}",
                          tests=str(len(cases)), failures=str(len(comparison.regressions)), errors="0", skipped="0", time="0")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("candidate", comparison.candidate), ("baseline", comparison.baseline),
                        ("tolerance_points", f"{comparison.tolerance_points:g}"), ("paired", str(comparison.paired).lower())):
        ET.SubElement(properties, "property", name=name, value=value)
    for row in cases:
        case = ET.SubElement(suite, "testcase", classname=f"vtde-bench.{row.task}", name=row.metric, time="0")
        line = describe(row, comparison.tolerance_points)
        if row.regressed:
            failure = ET.SubElement(case, "failure", message=f"{row.metric} dropped {-row.delta:.2f} points", type="regression")
            failure.text = line
        ET.SubElement(case, "system-out").text = line
    if comparison.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(comparison.notes)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def markdown(comparison: Comparison) -> str:
    """A summary for a pull-request comment: the verdict, a table in percent and points, and notes."""
    regressions = comparison.regressions
    headline = (f"**{len(regressions)} regression{'s' if len(regressions) != 1 else ''}**" if regressions
                else "**No regressions**")
    lines = [
        "## vtde-bench: candidate vs baseline", "",
        f"{headline} — candidate `{comparison.candidate}`, baseline `{comparison.baseline}`, "
        f"tolerance {comparison.tolerance_points:g} points{', paired bootstrap' if comparison.paired else ''}.", "",
        "| task | metric | baseline (%) | candidate (%) | Δ (points) | paired 95% interval (points) | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    marks = {"regressed": "❌ regressed", "improved": "✅ improved", "ok": "ok", NOT_SIGNIFICANT: "not significant"}
    for row in comparison.rows:
        metric = f"**{row.metric}**" if row.main else row.metric
        lines.append(f"| {row.task} | {metric} | {100 * row.baseline:.2f} | {100 * row.candidate:.2f} | {row.delta:+.2f} | "
                     f"{interval_text(row.paired_interval)} | {marks.get(row.verdict, row.verdict)} |")
    if comparison.notes:
        lines += ["", *[f"- {note}" for note in comparison.notes]]
    lines += ["", "A metric regresses when baseline − candidate exceeds the tolerance"
              + (" and the paired interval lies below zero." if comparison.paired else ".")]
    return "\n".join(lines) + "\n"


def write_junit_xml(comparison: Comparison, path: str | Path) -> Path:
    data = junit_xml(comparison)
    atomic_write(Path(path), lambda f: f.write(data), where="--junit-xml path")
    return Path(path)


def write_markdown(comparison: Comparison, path: str | Path) -> Path:
    data = markdown(comparison).encode("utf-8")
    atomic_write(Path(path), lambda f: f.write(data), where="--markdown path")
    return Path(path)


def interval_text(interval: tuple[float, float] | None) -> str:
    """A paired interval in points as `[low, high]`, or "" when there is none."""
    return "" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"
