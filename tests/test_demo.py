"""The built-in demo: the trained model is far above chance, the untrained copy at chance, and `vtde-bench demo` shows it."""

from __future__ import annotations

import json
import math

import pytest

from vtde_bench import RunOptions, evaluate
from vtde_bench.cli import main
from vtde_bench.demo import save_untrained_demo_model, train_demo_model
from vtde_bench.tasks import load_tasks


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """Train once for the module, in the layout `vtde-bench demo --home` uses."""
    home = tmp_path_factory.mktemp("demo")
    train_demo_model(home / "vtde-demo-trained")
    save_untrained_demo_model(home / "vtde-demo-untrained")
    return home


def accuracy(checkpoint) -> tuple[float, int, int]:
    (task,) = load_tasks("shapes-classification")
    result = evaluate(str(checkpoint), [task], options=RunOptions(output_dir=None, cache=False, bootstrap=0))[task.name]
    return result.metrics["acc1"], result.dataset.num_images, len(task.classnames)


def test_trained_model_is_far_above_chance(demo_home):
    acc1, n, classes = accuracy(demo_home / "vtde-demo-trained")
    assert n == 500
    assert acc1 >= 0.6 and acc1 >= 5 / classes


def test_untrained_model_sits_at_chance(demo_home):
    """Within chance ± 3 binomial standard errors."""
    acc1, n, classes = accuracy(demo_home / "vtde-demo-untrained")
    chance = 1 / classes
    se = math.sqrt(chance * (1 - chance) / n)
    assert chance - 3 * se <= acc1 <= chance + 3 * se


def test_demo_command_prints_both_models(demo_home, tmp_path, capsys):
    assert main(["demo", "--home", str(demo_home), "--output-dir", str(tmp_path), "--workers", "0"]) == 0
    shown = capsys.readouterr().out
    for text in ("vtde-demo-trained", "vtde-demo-untrained", "shapes-classification", "shapes-retrieval", "checkpoints:"):
        assert text in shown
    trained = json.loads(next(tmp_path.glob("vtde-demo-trained-*/shapes-classification.json")).read_text())
    untrained = json.loads(next(tmp_path.glob("vtde-demo-untrained-*/shapes-classification.json")).read_text())
    assert trained["main_score"] > untrained["main_score"] + 0.3
    retrieval = json.loads(next(tmp_path.glob("vtde-demo-trained-*/shapes-retrieval.json")).read_text())
    assert retrieval["main_score"] > 0.05  # 500 images: chance R@1 is about 0.002
