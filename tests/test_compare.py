"""`vtde-bench compare`, the regression gate: exit codes 0/1/2/3, paired mode, JUnit XML, markdown, the CI workflow doc."""

from __future__ import annotations

import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

import helpers
from helpers import COLOUR_NAMES
from helpers import classification_samples, write_result
from vtde_bench import RunOptions, evaluate
from vtde_bench.cli import main
from vtde_bench.analysis.compare import NOT_SIGNIFICANT, REGRESSED, compare

ROOT = Path(__file__).resolve().parent.parent
N = 200  # images in the synthetic task


@pytest.fixture(scope="module")
def real(tmp_path_factory, tiny_vtde, cards):
    """A real run of the tiny dual encoder on both tasks (baseline), and a copy of it (a candidate that equals it)."""
    root = tmp_path_factory.mktemp("compare-real")
    assert main(["run", "--workers", "0", "--bootstrap", "200", "--model", str(tiny_vtde), "--tasks", *map(str, cards),
                 "--output-dir", str(root / "baseline")]) == 0
    shutil.copytree(root / "baseline", root / "candidate")
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A baseline with 120/200 right, and candidates 10 images worse (clear) and 1 image worse net (noise)."""
    root = tmp_path_factory.mktemp("compare-synthetic")
    correct = np.zeros(N, dtype=bool)
    correct[:120] = True
    write_result(root / "baseline", slug="base", task="syn", samples=classification_samples(correct))
    worse = correct.copy()
    worse[:10] = False  # 10 images lost: −5 points
    write_result(root / "worse", slug="worse", task="syn", samples=classification_samples(worse))
    noisy = correct.copy()
    noisy[:3] = False  # 3 images lost, 2 gained: net −1 image, −0.5 points
    noisy[150:152] = True
    write_result(root / "noisy", slug="noisy", task="syn", samples=classification_samples(noisy))
    return root


def gate(*args: str) -> int:
    return main(["compare", *map(str, args)])


def test_identical_runs_pass_with_files_written(real, tmp_path, capsys):
    junit, md = tmp_path / "out" / "junit.xml", tmp_path / "out" / "summary.md"
    assert gate(real / "candidate", "--baseline", real / "baseline", "--metrics", "all", "--paired",
                "--junit-xml", junit, "--markdown", md) == 0
    assert "no regressions" in capsys.readouterr().out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == str(3 + 7) and suite.get("failures") == "0"
    assert {c.get("classname") for c in suite.iter("testcase")} == {"vtde-bench.colours", "vtde-bench.captions"}
    text = md.read_text()
    assert "**No regressions**" in text and text.count("| colours |") == 3 and text.count("| captions |") == 7
    assert "[0.00, 0.00]" in text  # paired interval of a run against itself


def test_regression_exits_1_and_junit_parsers_accept_it(synthetic, tmp_path, capsys):
    junitparser = pytest.importorskip("junitparser")
    junit, md = tmp_path / "junit.xml", tmp_path / "summary.md"
    assert gate(synthetic / "worse", "--baseline", synthetic / "baseline", "--metrics", "all", "--junit-xml", junit, "--markdown", md) == 1
    assert "regression" in capsys.readouterr().out
    xml = junitparser.JUnitXml.fromfile(str(junit))
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == {"acc1", "acc5", "mean_per_class_recall"}
    assert not cases["acc1"].is_passed and isinstance(cases["acc1"].result[0], junitparser.Failure)
    assert "-5.00 points" in cases["acc1"].result[0].text
    root = ET.parse(junit).getroot()
    assert int(root.get("failures")) == sum(not c.is_passed for c in cases.values()) >= 1
    assert "❌ regressed" in md.read_text() and "| syn | **acc1** | 60.00 | 55.00 | -5.00 |" in md.read_text()


def test_tolerance_is_absolute_points(synthetic):
    assert gate(synthetic / "worse", "--baseline", synthetic / "baseline", "--tolerance", "5") == 0  # −5.00 is not > 5
    assert gate(synthetic / "worse", "--baseline", synthetic / "baseline", "--tolerance", "4.99") == 1


def test_paired_interval_including_zero_is_not_a_regression(synthetic):
    """Net −1 image of 200 (−0.5 points) exceeds a 0.25-point tolerance, but the paired interval straddles zero."""
    args = (synthetic / "noisy", synthetic / "baseline")
    unpaired = compare(*args, tolerance_points=0.25)
    assert unpaired.rows[0].delta == pytest.approx(-0.5) and unpaired.rows[0].verdict == REGRESSED
    paired = compare(*args, tolerance_points=0.25, paired=True)
    low, high = paired.rows[0].paired_interval
    assert low < 0 < high and paired.rows[0].verdict == NOT_SIGNIFICANT and not paired.regressed
    assert gate(*args[:1], "--baseline", args[1], "--tolerance", "0.25") == 1
    assert gate(*args[:1], "--baseline", args[1], "--tolerance", "0.25", "--paired") == 0


def test_paired_interval_below_zero_is_a_regression(synthetic):
    comparison = compare(synthetic / "worse", synthetic / "baseline", paired=True)
    low, high = comparison.rows[0].paired_interval
    assert low < high < 0 and comparison.regressed
    assert gate(synthetic / "worse", "--baseline", synthetic / "baseline", "--paired") == 1


def write_other(tmp_path: Path, **changes) -> Path:
    correct = np.arange(N) < 120
    write_result(tmp_path / "cand", slug="cand", task="syn", samples=classification_samples(correct), **changes)
    return tmp_path / "cand"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-task", "no result for"),
        ("several-models", "results of 3 models"),
        ("task-version", "task version 2 vs baseline 1"),
        ("fingerprint", "dataset fingerprint"),
        ("published-baseline", "only with --force: their protocols may differ"),
        ("clip-benchmark-baseline", "only with --force: their protocols may differ"),
        ("no-such-path", "no such file or folder"),
        ("empty-folder", "no vtde-bench results"),
        ("negative-tolerance", "--tolerance"),
        ("missing-samples-paired", "no per-sample file"),
    ],
)
def test_bad_input_exits_2(case, message, synthetic, tmp_path, capsys):
    base = synthetic / "baseline"
    cand: Path = synthetic / "worse"
    extra: list[str] = []
    if case == "missing-task":
        cand = write_other(tmp_path)
        write_result(tmp_path / "base2", slug="base", task="other", metrics={"acc1": 0.5, "acc5": 0.5, "mean_per_class_recall": 0.5})
        shutil.copytree(base, tmp_path / "base2", dirs_exist_ok=True)
        base = tmp_path / "base2"
    elif case == "several-models":
        cand = synthetic  # the folder holds three models
    elif case == "task-version":
        cand = write_other(tmp_path, version=2)
    elif case == "fingerprint":
        cand = write_other(tmp_path, fingerprint="e" * 64)
    elif case == "published-baseline":
        base = ROOT / "vtde_bench" / "reference" / "published.json"
    elif case == "clip-benchmark-baseline":
        base = tmp_path / "cb.json"
        base.write_text('{"dataset": "cifar10", "model": "ViT-B-32", "pretrained": "openai", "task": "zeroshot_classification", '
                        '"metrics": {"acc1": 0.9}, "language": "en"}')
    elif case == "no-such-path":
        base = tmp_path / "nothing"
    elif case == "empty-folder":
        base = tmp_path / "empty"
        base.mkdir()
    elif case == "negative-tolerance":
        extra = ["--tolerance", "-1"]
    elif case == "missing-samples-paired":
        cand = tmp_path / "nosamples"
        shutil.copytree(synthetic / "worse", cand)
        next(cand.glob("*/*.samples.parquet")).unlink()
        extra = ["--paired"]
    assert gate(cand, "--baseline", base, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_force_compares_across_fingerprints_with_a_note(synthetic, tmp_path, capsys):
    cand = write_other(tmp_path, fingerprint="e" * 64)
    assert gate(cand, "--baseline", synthetic / "baseline", "--force", "--paired") == 0
    err = capsys.readouterr().err
    assert "--force" in err and "no paired interval" in err


def test_corrupt_per_sample_file_with_paired_exits_3(real, tmp_path, capsys):
    cand = tmp_path / "candidate"
    shutil.copytree(real / "candidate", cand)
    next(cand.glob("*/colours.samples.parquet")).write_bytes(b"PAR1 this is not a parquet file PAR1")
    assert gate(cand, "--baseline", real / "baseline") == 0  # unpaired: the per-sample files are not read
    assert gate(cand, "--baseline", real / "baseline", "--paired") == 3
    err = capsys.readouterr().err
    assert "colours.samples.parquet" in err and "Traceback" not in err


def _workflow_commands() -> tuple[dict[str, str], list[str]]:
    """The workflow's env and every `vtde-bench ...` command in its `run` steps, continuation lines joined."""
    workflow = yaml.safe_load((ROOT / "docs" / "github-workflow.yml").read_text())
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            commands += [line.strip() for line in script.splitlines() if line.strip().startswith("vtde-bench ")]
    return {k: str(v) for k, v in workflow["env"].items()}, commands


def test_ci_workflow_commands_run(tiny_vtde, cards, tmp_path, monkeypatch):
    """docs/github-workflow.yml stays true: its commands run as written, on a tiny model and fixture tasks."""
    env, commands = _workflow_commands()
    assert [c.split()[1] for c in commands] == ["run", "run", "compare", "leaderboard"]
    candidate = tmp_path / "checkpoints" / "candidate"
    shutil.copytree(tiny_vtde, candidate)  # same weights in another folder: nothing can regress
    env.update(BASELINE_MODEL=str(tiny_vtde), CANDIDATE_MODEL=str(candidate), TASKS=" ".join(map(str, cards)))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()  # the workflow's `mkdir -p reports`
    for command in commands:
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], command)
        argv = shlex.split(expanded)[1:]
        if argv[0] == "run":
            argv[1:1] = ["--workers", "0", "--bootstrap", "200"]  # speed only; the defaults are what the doc shows
        assert main(argv) == 0, command
    assert ET.parse(tmp_path / "reports" / "vtde-bench.xml").getroot().get("failures") == "0"
    assert "No regressions" in (tmp_path / "reports" / "vtde-bench.md").read_text()
    assert "<svg" in (tmp_path / "reports" / "leaderboard.html").read_text()


def test_ci_workflow_installs_vtde_bench_from_its_repository():
    """Issue #14 item 6: the workflow ran `pip install vtde-bench`, which the package index does not have."""
    workflow = yaml.safe_load((ROOT / "docs" / "github-workflow.yml").read_text())
    installs = [s["run"] for s in workflow["jobs"]["evaluate"]["steps"] if "pip install" in s.get("run", "")]
    assert installs == ['pip install "$VTDE_BENCH"'] and workflow["env"]["VTDE_BENCH"].startswith("git+https://")


def test_ci_doc_and_readme_point_at_the_workflow():
    ci = (ROOT / "docs" / "ci.md").read_text()
    assert "github-workflow.yml" in ci
    readme = (ROOT / "README.md").read_text()
    assert "## Use in CI" in readme and "docs/ci.md" in readme and "## Leaderboards" in readme
    assert readme.index("## Leaderboards") < readme.index("## Use in CI") < readme.index("## Python API")


@pytest.mark.parametrize("option", ["--junit-xml", "--markdown"])
def test_unwritable_report_file_names_its_option(option, synthetic, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    capsys.readouterr()
    assert gate(synthetic / "worse", "--baseline", synthetic / "baseline", option, tmp_path / "a-file" / "report") == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]  # the notes before it are warnings (no profiles here)
    assert len(errors) == 1 and f"choose another {option} path" in errors[0] and err[-1] == errors[0]


def test_paired_compare_of_the_same_data_in_two_layouts(tiny_vtde, colour_rows, tmp_path, capsys):
    """Issue #14 item 2: the same rows as parquet and as webdataset shards have equal fingerprints but other keys;
    `--paired` exited 3 ("per-sample files do not match"). Rows now pair by image content."""
    import pandas as pd

    helpers.write_parquet(tmp_path / "a" / "colours", "test", colour_rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
    helpers.write_webdataset(tmp_path / "b" / "colours", "test", colour_rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
    card = helpers.write_card(tmp_path / "colours.toml", name="colours", kind="zeroshot_classification",
                              source={"path": "a/colours", "split": "test", "num_samples": len(colour_rows)}, classnames=COLOUR_NAMES)
    for layout in "ab":
        assert main(["run", "--workers", "0", "--bootstrap", "50", "--model", str(tiny_vtde), "--tasks", str(card),
                     "--data-dir", str(tmp_path / layout), "--output-dir", str(tmp_path / f"out-{layout}")]) == 0
    (a,), (b,) = (list((tmp_path / f"out-{x}").glob("*/colours.samples.parquet")) for x in "ab")
    assert set(pd.read_parquet(a)["key"]).isdisjoint(pd.read_parquet(b)["key"])  # the layouts name rows apart
    capsys.readouterr()
    assert gate(tmp_path / "out-a", "--baseline", tmp_path / "out-b", "--paired") == 0
    assert "no regressions" in capsys.readouterr().out
    # Per-sample files written before they held image hashes pair only by key: exit 2, naming the fix.
    for path in (a, b):
        pd.read_parquet(path).drop(columns=["image_sha256", "row"]).to_parquet(path, index=False)
    assert gate(tmp_path / "out-a", "--baseline", tmp_path / "out-b", "--paired") == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "image content" in err and len(err.strip().splitlines()) == 1


def test_runs_with_other_evaluation_settings_are_refused_unless_forced(tiny_siglip, colour_rows, tmp_path, capsys):
    """Issue #19 item 4: the text rule (and precision, decoder) is chosen by the run, not the checkpoint."""
    card = helpers.colour_card(tmp_path, colour_rows[:6])
    for folder, rule in (("canonical", None), ("none", "none")):
        evaluate(str(tiny_siglip), [str(card)], options=RunOptions(output_dir=tmp_path / folder, workers=0, bootstrap=0,
                                                                   text_normalize=rule))
    capsys.readouterr()
    assert gate(tmp_path / "none", "--baseline", tmp_path / "canonical") == 2
    err = capsys.readouterr().err
    assert "colours: text rule none vs baseline canonical; the runs are not comparable" in err
    assert gate(tmp_path / "none", "--baseline", tmp_path / "canonical", "--force") in (0, 1)
    out = capsys.readouterr()
    assert "text rule none vs baseline canonical (compared anyway: --force)" in out.out + out.err
    assert "text preprocessing differs" in out.out + out.err


def test_an_imported_baseline_is_compared_only_with_force(tmp_path, capsys):
    """Issue #22 item 3: numbers of another tool are a baseline only when asked for, and never silently."""
    write_result(tmp_path / "cand", slug="cand", task="cifar10", metrics={"acc1": 0.85, "acc5": 0.95, "mean_per_class_recall": 0.85})
    base = tmp_path / "cb.json"
    base.write_text('{"dataset": "cifar10", "model": "ViT-B-32", "pretrained": "openai", "task": "zeroshot_classification", '
                    '"metrics": {"acc1": 0.9, "acc5": 0.99, "mean_per_class_recall": 0.9}, "language": "en"}')
    assert gate(tmp_path / "cand", "--baseline", base) == 2
    assert "only with --force" in capsys.readouterr().err
    assert gate(tmp_path / "cand", "--baseline", base, "--force", "--paired") == 1  # 5 points down: a regression
    output = capsys.readouterr()
    text = output.out + output.err
    assert "the baseline is clip_benchmark numbers" in text and "the protocols may differ" in text
    assert "no per-sample file, so no paired interval" in text
