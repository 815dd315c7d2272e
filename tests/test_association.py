"""WinoGAViL, the association kind: a fixture in the source's own files (nlphuji/winogavil's
winogavil_dataset.csv, with its columns and JSON-list cells, and winogavil_images.zip holding
winogavil_images/<candidate>.jpg, photo-sized, names with spaces), read from the archive and from its extracted
folder; the selection, the Jaccard index and the subsets against DataComp's computation (scikit-learn's
`jaccard_score` on the top-k by similarity); ties at the cut; the prompts; bootstrap over instances; errors.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import jaccard_score

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench.data import load_task_data
from vtde_bench.errors import UserError
from vtde_bench.kinds import get_kind
from vtde_bench.kinds.association import prompt, select
from vtde_bench.tasks import load_tasks

COLUMNS = ["candidates", "cue", "associations", "score_fool_the_ai", "num_associations", "num_candidates",
           "solvers_jaccard_mean", "solvers_jaccard_std", "ID"]  # the source CSV's header, in its order
NAMES = ["eagle", "teepee", "factory", "metal", "ash", "teddy bear", "air conditioning", "owl", "moon", "igloo",
         "anchor", "violin", "rope"]
SIZES = [(640, 427), (427, 640), (333, 501), (500, 375)]


def instances(n: int = 10) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        k = [5, 6, 10, 12][i % 4]
        candidates = list(rng.choice(NAMES, k, replace=False))
        answers = candidates[: 2 + i % 2]
        cue = ["bald", "Pompeii", "ice", "orchestra"][i % 4]
        rows.append({"candidates": candidates, "cue": cue, "associations": answers})
    return rows


def write_winogavil(folder: Path, rows: list[dict], *, extracted: bool = False, names=NAMES) -> None:
    folder.mkdir(parents=True)
    with open(folder / "winogavil_dataset.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, row in enumerate(rows):
            writer.writerow([json.dumps(row["candidates"]), row["cue"], json.dumps(row["associations"]), 50,
                             len(row["associations"]), len(row["candidates"]), 0.83, 0.24, i])
    images = {}
    for i, name in enumerate(names):
        w, h = SIZES[i % len(SIZES)]
        pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        images[f"winogavil_images/{name}.jpg"] = helpers.encode(Image.fromarray(pixels), "JPEG")
    if extracted:
        for member, data in images.items():
            (folder / member).parent.mkdir(exist_ok=True)
            (folder / member).write_bytes(data)
    else:
        with zipfile.ZipFile(folder / "winogavil_images.zip", "w") as z:
            for member, data in images.items():
                z.writestr(member, data)


def small(n: int):
    (task,) = load_tasks("winogavil")
    return dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=n))


def datacomp_reference(result, data_dir: Path, model) -> dict[str, float]:
    """DataComp's wino_eval.py: the top-n_assoc candidates by similarity (argsort), scikit-learn's jaccard_score."""
    import torch

    rows = list(csv.DictReader(open(data_dir / "winogavil" / "winogavil_dataset.csv", encoding="utf-8")))
    scores, groups = [], []
    with zipfile.ZipFile(data_dir / "winogavil" / "winogavil_images.zip") as z:
        for row in rows:
            candidates, answers = json.loads(row["candidates"]), json.loads(row["associations"])
            images = [z.read(f"winogavil_images/{c}.jpg") for c in candidates]
            with torch.no_grad():
                img = model.embed_image_inputs(model.image_inputs([model.decode(b) for b in images])).float()
                cue = row["cue"].lower()
                txt = model.embed_text_inputs(model.text_inputs([("An " if cue[0] in "aeiou" else "A ") + cue])).float()
            img, txt = (torch.nn.functional.normalize(x, dim=-1) for x in (img, txt))
            logits = (txt @ img.T).squeeze(0).numpy()
            top = np.argsort(logits)[-len(answers):]
            scores.append(jaccard_score(np.isin(candidates, answers), np.isin(np.arange(len(candidates)), top)))
            groups.append(len(candidates))
    scores, groups = np.array(scores), np.array(groups)
    return {"avg_jaccard_score": scores.mean(), "jaccard_score_5": scores[groups == 5].mean(),
            "jaccard_score_6": scores[groups == 6].mean(), "jaccard_score_10": scores[groups == 10].mean(),
            "jaccard_score_12": scores[groups == 12].mean(), "jaccard_score_5-6": scores[groups <= 6].mean(),
            "jaccard_score_10-12": scores[groups >= 10].mean()}


def test_the_card_is_datacomps():
    (task,) = load_tasks("winogavil")
    assert task.main_metric == "jaccard_score_10-12" and task.source.num_samples == 3563
    assert len(task.source.revision) == 40 and task.kind.needs == "instances"
    assert task.text_column == "cue" and task.candidates_column == "candidates" and task.answers_column == "associations"


@pytest.mark.parametrize("extracted", [False, True], ids=["archive", "extracted"])
def test_winogavil_end_to_end_equals_datacomps_computation(tmp_path, tiny_clip, extracted):
    rows = instances()
    write_winogavil(tmp_path / "data" / "winogavil", rows, extracted=extracted)
    result = evaluate(str(tiny_clip), [small(len(rows))], options=RunOptions(output_dir=tmp_path / "out", data_dir=tmp_path / "data",
                                                                         workers=0, bootstrap=50))["winogavil"]
    assert result.dataset.num_images == len({c for r in rows for c in r["candidates"]}) and result.dataset.num_texts == len(rows)
    assert result.main_score == result.metrics["jaccard_score_10-12"]
    assert set(result.intervals) == set(result.metrics)
    if not extracted:
        from vtde_bench.encoders import load_model

        model = load_model(str(tiny_clip), device="cpu")
        reference = datacomp_reference(result, tmp_path / "data", model)
        for name, value in reference.items():  # no ties on real embeddings: argsort's cut is ours
            assert result.metrics[name] == pytest.approx(value, abs=1e-9), name
    samples = result.samples
    assert list(samples.columns[:4]) == ["key", "text", "candidates", "answers"]
    assert (samples["intersection"] <= samples["answers"]).all()


def test_archive_and_folder_give_one_fingerprint(tmp_path):
    rows = instances()
    write_winogavil(tmp_path / "a" / "winogavil", rows)
    write_winogavil(tmp_path / "b" / "winogavil", rows, extracted=True)
    task = small(len(rows))
    a, b = (load_task_data(task, data_dir=tmp_path / x) for x in "ab")
    assert a.fingerprint == b.fingerprint and a.keys == b.keys == sorted(a.keys)
    limited = load_task_data(task, data_dir=tmp_path / "a", limit=3)
    assert len(limited.instances) == 3 and set(limited.keys) == {c for r in rows[:3] for c in r["candidates"]}


def test_ties_at_the_cut_count_against_the_model():
    assert select([0.5, 0.5, 0.5], {0}) == [1]  # three-way tie for one place: a wrong candidate takes it
    assert select([0.9, 0.5, 0.5, 0.1], {0, 1}) == [0, 2]
    assert select([0.9, 0.8, 0.1], {0, 1}) == [0, 1]


def test_prompts_are_datacomps():
    assert prompt("Bald", lowercase=True, article=True) == "A bald"
    assert prompt("Orchestra", lowercase=True, article=True) == "An orchestra"
    assert prompt("Ice", lowercase=False, article=False) == "Ice"


def test_bootstrap_resamples_instances():
    import pandas as pd

    kind = get_kind("association")
    samples = pd.DataFrame({"key": ["2", "0", "1", "3"], "candidates": [5, 10, 12, 6], "intersection": [1, 2, 0, 1],
                            "union": [3, 2, 4, 1]})
    n, statistic = kind.statistic(samples, ("jaccard_score_10-12", "avg_jaccard_score"))
    stats = statistic(np.array([[0, 1, 2, 3], [2, 2, 2, 2]]))  # rows sorted by key: 0, 1, 2, 3
    assert n == 4 and stats["jaccard_score_10-12"][0] == pytest.approx((1 + 0) / 2)
    assert stats["avg_jaccard_score"][0] == pytest.approx((1 + 0 + 1 / 3 + 1) / 4)
    assert np.isnan(stats["jaccard_score_10-12"][1]) and stats["avg_jaccard_score"][1] == pytest.approx(1 / 3)


@pytest.mark.parametrize("edit, problem", [
    (lambda rows: rows[0].update(associations=["not there"]), "instance '0' has answer 'not there' is not a candidate"),
    (lambda rows: rows[1].update(candidates=rows[1]["candidates"] + ["unicorn"]), "candidate image\\(s\\) are not among the images"),
])
def test_bad_instances_are_clear_errors(tmp_path, edit, problem):
    rows = instances()
    edit(rows)
    write_winogavil(tmp_path / "data" / "winogavil", rows)
    with pytest.raises(UserError, match=problem):
        load_task_data(small(len(rows)), data_dir=tmp_path / "data")


def test_a_copy_without_images_or_with_other_counts_is_a_clear_error(tmp_path):
    rows = instances()
    write_winogavil(tmp_path / "data" / "winogavil", rows)
    with pytest.raises(UserError, match="holds 10 instances but the card expects 3563"):
        load_task_data(load_tasks("winogavil")[0], data_dir=tmp_path / "data")
    (tmp_path / "data" / "winogavil" / "winogavil_images.zip").unlink()
    with pytest.raises(UserError, match="has neither winogavil_images.zip nor its images extracted to winogavil_images/"):
        load_task_data(small(len(rows)), data_dir=tmp_path / "data")


def test_download_fetches_the_two_files_from_a_mirror(tmp_path, monkeypatch):
    from vtde_bench.data.download import download_task

    rows = instances()
    write_winogavil(tmp_path / "mirror" / "nlphuji" / "winogavil", rows)
    (tmp_path / "mirror" / "nlphuji" / "winogavil" / "winogavil.py").write_text("# the loading script: not needed\n")
    monkeypatch.setenv("VTDE_BENCH_HUB_MIRROR", str(tmp_path / "mirror"))
    dest = download_task(small(len(rows)), tmp_path / "data")
    assert sorted(p.name for p in dest.iterdir()) == [".vtde-source.json", "winogavil_dataset.csv", "winogavil_images.zip"]
    assert len(load_task_data(small(len(rows)), data_dir=tmp_path / "data").instances) == len(rows)
