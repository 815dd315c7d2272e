"""scripts/reproduce_published.py cannot run offline; its comparison logic is tested on stored numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vtde_bench.errors import UserError
from vtde_bench.reference import published_for, published_rows

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "reproduce_published.py"
spec = importlib.util.spec_from_file_location("reproduce_published", SCRIPT)
reproduce = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = reproduce  # dataclasses look their module up there
spec.loader.exec_module(reproduce)


def test_published_reference_for_vit_b32_matches_the_issue():
    """open_clip's ViT-B/32 (OpenAI weights) numbers, as fractions."""
    p = published_for("openai/clip-vit-base-patch32")
    assert p["imagenet1k"]["acc1"] == 0.6332 and p["cifar10"]["acc1"] == 0.8983 and p["cifar100"]["acc1"] == 0.6423
    assert p["mscoco"]["text_to_image_recall@1"] == 0.3044 and p["mscoco"]["image_to_text_recall@1"] == 0.5012
    assert p["flickr30k"]["text_to_image_recall@1"] == 0.5878 and p["flickr30k"]["image_to_text_recall@1"] == 0.7890


def test_every_published_row_names_known_tasks_and_fractions():
    """Each metric is one its task's card reports, or the one the datacomp group scores the task by (DataComp's
    worst-group accuracies, WinoGAViL's Jaccard score: not computed here yet)."""
    from vtde_bench.tasks import groups, load_tasks, registry

    datacomp = groups()["datacomp"]
    tasks = {t.name: t for t in load_tasks(list(registry()))}
    for row in published_rows():
        for task, metrics in row["metrics"].items():
            known = set(tasks[task].metrics) if task in tasks else set()
            assert set(metrics) <= known | {datacomp.metrics.get(task)}, (row["model"], task)
            assert all(0 < v < 1 for v in metrics.values())


def test_compare_within_and_outside_tolerance():
    published = published_for("openai/clip-vit-base-patch32")
    measured = {task: dict(metrics) for task, metrics in published.items()}
    measured["cifar10"]["acc1"] += 0.003  # +0.30 points: inside
    measured["mscoco"]["image_to_text_recall@1"] -= 0.0031  # -0.31 points: outside
    del measured["flickr30k"]  # not run
    checks = {(c.task, c.metric): c for c in reproduce.compare(measured, published)}
    assert len(checks) == 7
    assert checks[("imagenet1k", "acc1")].ok(0.3) and checks[("imagenet1k", "acc1")].delta_points == 0
    assert checks[("cifar10", "acc1")].ok(0.3)
    assert not checks[("mscoco", "image_to_text_recall@1")].ok(0.3)
    assert checks[("mscoco", "image_to_text_recall@1")].delta_points == pytest.approx(-0.31)
    assert not checks[("flickr30k", "text_to_image_recall@1")].ok(0.3)  # missing is a failure


def test_unknown_model_has_no_reference():
    with pytest.raises(UserError, match="no published numbers"):
        published_for("someone/unknown")
