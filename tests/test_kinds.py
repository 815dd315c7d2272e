"""Kinds of evaluation are objects in a registry: a third one comes from outside the package, end to end.

Guards the design of issue #15: no module outside `vtde_bench.kinds` names a metric or a kind, so a
kind registered from the tests alone (in process with `register_kind`, in a CLI subprocess through
the `vtde_bench.kinds` entry-point group) runs through cards, `run`, result files, the leaderboard
and `compare` without an edit to the package.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
import toy_kind
from vtde_bench import evaluate
from vtde_bench.cli import main
from vtde_bench.errors import UserError
from vtde_bench.kinds import Kind, Metric, all_kinds, get_kind, register_kind
from vtde_bench.results import result_path
from vtde_bench.tasks import load_card

PACKAGE = Path(__file__).resolve().parent.parent / "vtde_bench"


def toy_card(folder: Path, rows, name: str = "picks") -> Path:
    helpers.write_webdataset(folder / f"{name}-data", "test", rows, kind="retrieval")
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\ntype = "caption_pick"\nversion = 1\n\n[source]\npath = "{name}-data"\n'
                    f'split = "test"\nnum_samples = {len(rows)}\n')
    return path


def test_no_module_outside_the_kinds_names_a_metric_or_a_kind():
    """String constants (docstrings aside) of every other module: no kind's type, no metric name or stem."""
    register_kind(toy_kind.KIND)
    kinds = all_kinds()
    types = {k.type for k in kinds}
    names = {m.name for k in kinds for m in k.metrics}
    names |= {n.split("@")[0] + "@" for n in names if "@" in n}  # "image_to_text_recall@" in an f-string
    pattern = re.compile(r"(?<![\w@])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")(?!\w)")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "kinds" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value in types or pattern.search(node.value):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value[:60]!r}")
    assert found == []


def test_a_kind_registered_in_process_runs_end_to_end(tmp_path, tiny_vtde, tiny_clip, caption_rows, capsys):
    register_kind(toy_kind.KIND)
    card = toy_card(tmp_path, caption_rows)
    spec = load_card(card)
    assert spec.kind is toy_kind.KIND and spec.main_metric == "hit_rate" and spec.metrics == ("hit_rate", "miss_rate")
    results = {}
    for name, model in (("vtde", tiny_vtde), ("clip", tiny_clip)):
        result = evaluate(str(model), [str(card)], output_dir=tmp_path / name, workers=0, bootstrap=50)["picks"]
        assert result.metrics["hit_rate"] + result.metrics["miss_rate"] == pytest.approx(1.0)
        assert set(result.intervals) == {"hit_rate", "miss_rate"} and result.task.type == "caption_pick"
        on_disk = json.loads(result_path(tmp_path / name, result.model.slug, "picks").read_text())
        assert on_disk["metrics"] == result.metrics and on_disk["run"]["profile"]["task_type"] == "caption_pick"
        results[name] = result
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "vtde"), str(tmp_path / "clip"), "--no-published", "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["tasks"] == [{"name": "picks", "type": "caption_pick", "main_metric": "hit_rate"}]
    tie = results["vtde"].metrics == results["clip"].metrics
    assert sorted(r["rank"] for r in board["rows"]) == ([1, 1] if tie else [1, 2])
    assert main(["leaderboard", str(tmp_path / "vtde"), "--no-published"]) == 0
    assert "toy avg" in capsys.readouterr().out
    # compare: the same run against itself regresses nothing, paired; a worse candidate regresses on both metrics,
    # each in its own direction (miss_rate is lower-is-better).
    assert main(["compare", str(tmp_path / "vtde"), "--baseline", str(tmp_path / "vtde"), "--paired", "--metrics", "all"]) == 0
    from helpers import ColourModel

    seeing = evaluate(ColourModel(), [str(card)], output_dir=tmp_path / "seeing", workers=0, bootstrap=0)["picks"]
    confused = evaluate(ColourModel(swap={"red": "green", "blue": "white"}), [str(card)], output_dir=tmp_path / "confused",
                        workers=0, bootstrap=0)["picks"]
    assert seeing.metrics["hit_rate"] > confused.metrics["hit_rate"]
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "confused"), "--baseline", str(tmp_path / "seeing"), "--metrics", "all"]) == 1
    out = capsys.readouterr().out
    assert out.count("regressed") == 2, out
    assert main(["compare", str(tmp_path / "seeing"), "--baseline", str(tmp_path / "confused"), "--metrics", "all"]) == 0
    assert capsys.readouterr().out.count("improved") == 2


def test_a_kind_from_an_entry_point_runs_in_a_cli_subprocess(tmp_path, tiny_vtde, caption_rows):
    """No edit to the package: an installed distribution (here a dist-info folder on PYTHONPATH) names the kind."""
    plugin = tmp_path / "site"
    info = plugin / "vtde_toy_kind-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vtde-toy-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vtde_bench.kinds]\ncaption_pick = toy_kind:KIND\n")
    card = toy_card(tmp_path, caption_rows)
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(tests), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vtde_bench", *args], capture_output=True, text=True, env=env, timeout=300)

    out = tmp_path / "out"
    done = cli("run", "--model", str(tiny_vtde), "--tasks", str(card), "--workers", "0", "--bootstrap", "50",
               "--output-dir", str(out), "--no-cache")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "caption pick (toy)" in done.stdout
    (result,) = out.glob("*/picks.json")
    assert json.loads(result.read_text())["task"]["type"] == "caption_pick"
    board = cli("leaderboard", str(out), "--no-published", "--format", "json")
    assert board.returncode == 0 and json.loads(board.stdout)["tasks"][0]["type"] == "caption_pick"
    gate = cli("compare", str(out), "--baseline", str(out), "--paired", "--metrics", "all")
    assert gate.returncode == 0 and "no regressions" in gate.stdout
    # Without the plugin, the card names no kind: a one-line error, exit 2.
    bare = subprocess.run([sys.executable, "-m", "vtde_bench", "run", "--model", str(tiny_vtde), "--tasks", str(card)],
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode == 2 and "'type'" in bare.stderr and "caption_pick" in bare.stderr


def test_an_unknown_type_says_which_kinds_there_are(tmp_path):
    with pytest.raises(UserError, match="did you mean 'retrieval'"):
        get_kind("retreival")
    card = tmp_path / "bad.toml"
    card.write_text('name = "bad"\ntype = "zeroshot_clasification"\nversion = 1\n')
    with pytest.raises(UserError, match=r"field 'type'.*did you mean 'zeroshot_classification'"):
        load_card(card)


def test_register_kind_refuses_a_second_kind_of_one_type_and_a_main_metric_it_lacks():
    class Clash(Kind):
        type = "retrieval"
        title = short = "clash"
        needs = "captions"
        metrics = (Metric("m", "m"),)
        default_main_metric = "m"

    with pytest.raises(ValueError, match="registered already"):
        register_kind(Clash())

    class NoMain(Clash):
        type = "no-main"
        default_main_metric = "other"

    with pytest.raises(ValueError, match="main metric"):
        register_kind(NoMain())
    assert get_kind("retrieval") is not None and register_kind(get_kind("retrieval")) is get_kind("retrieval")
