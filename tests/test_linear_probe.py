"""Linear probes: the torch solver against scikit-learn's LogisticRegression (C = 1/λ) on seeded features, CLIP's
search for λ, the probe cards end to end on a copy in uoft-cs/cifar10's schema (parquet, config plain_text,
img/label, train and test splits), and a proof that few-shot fits never see a validation image."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import helpers
from vtde_bench import RunOptions, evaluate, probe
from vtde_bench.cli import main
from vtde_bench.errors import UserError
from vtde_bench.kinds.linear_probe import draw_shots, split_rows
from vtde_bench.tasks import load_card, load_tasks, tasks_dir


def blobs(seed: int, n: int, dim: int = 24, classes: int = 5, spread: float = 1.5):
    """Normalised features around seeded class centres, as embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.normal(scale=spread, size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("seed, strength", [(0, 0.1), (1, 1.0), (2, 10.0), (3, 100.0)])
def test_the_solver_agrees_with_scikit_learn(seed, strength):
    x, y = blobs(seed, 700)
    head = probe.fit(x[:500], y[:500], 5, strength, chunk_size=128)  # chunks: the result must not depend on them
    theirs = LogisticRegression(C=1 / strength, max_iter=10_000, tol=1e-10).fit(x[:500].numpy(), y[:500].numpy())
    same = (head.logits(x[500:]).argmax(1).numpy() == theirs.predict(x[500:].numpy())).mean()
    assert same >= 0.995
    assert np.abs(head.weight.numpy() - theirs.coef_).max() < 1e-3 * max(1.0, np.abs(theirs.coef_).max())
    again = probe.fit(x[:500], y[:500], 5, strength, chunk_size=128)
    assert torch.equal(again.weight, head.weight)  # deterministic


def test_clips_search_ends_on_the_eighth_decade_grid_at_the_best_validation_accuracy():
    x, y = blobs(4, 600, spread=2.5)
    found = probe.search((x[:400], y[:400]), (x[400:], y[400:]), 5)
    assert set(probe.START) <= set(found.tried) and len(found.tried) <= 7 + 2 * 4
    assert all(abs(e * 8 - round(e * 8)) < 1e-9 and -6 <= e <= 6 for e in found.tried)  # 97-point grid
    best = max(found.tried.values())
    assert found.tried[found.best] == best and found.best == max(e for e, a in found.tried.items() if a == best)
    for neighbour in (found.best - 1 / 8, found.best + 1 / 8):  # refined down to 8 steps per decade
        assert round(neighbour, 6) in found.tried or not -6 <= neighbour <= 6
    assert probe.search((x[:400], y[:400]), (x[400:], y[400:]), 5).tried == found.tried


def test_splits_and_draws():
    fit_rows, val_rows = split_rows(100, 20, seed=0)
    assert len(val_rows) == 20 and not set(fit_rows) & set(val_rows) and sorted(fit_rows + val_rows) == list(range(100))
    labels = [i % 4 for i in range(100)]
    rows = draw_shots(labels, fit_rows, 3, 4, seed=1, classnames=("a", "b", "c", "d"))
    assert len(rows) == 12 and set(rows) <= set(fit_rows) and [labels[r] for r in rows] == sorted(labels[r] for r in rows)
    assert rows == draw_shots(labels, fit_rows, 3, 4, seed=1, classnames=("a", "b", "c", "d"))
    few = [0] * 10 + [1] * 10 + [2] * 10 + [3] * 2
    with pytest.raises(UserError, match="class 'd' has 2 training image.s. outside validation, fewer than the 3"):
        draw_shots(few, list(range(32)), 3, 4, seed=0, classnames=("a", "b", "c", "d"))


# ----------------------------------------------------------------------------- end to end

NAMES = tuple(helpers.COLOURS)[:4]


def rows(n: int, seed: int):
    return [(helpers.png_bytes(helpers.colour_image(NAMES[i % 4], seed=seed * 1000 + i, size=40)), i % 4) for i in range(n)]


def probe_card(tmp_path: Path, name: str, *, test: int, train: int, validation: int, extra: str = "") -> Path:
    """The registry's card with this fixture's sizes and classes (the copy's real schema is the card's)."""
    text = (tasks_dir() / f"{name}.toml").read_text()
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    text = text.replace("num_samples = 10000", f"num_samples = {test}").replace("train_samples = 50000", f"train_samples = {train}")
    text = text.replace("validation_samples = 10000", f"validation_samples = {validation}")
    text = text.replace('classnames = "classnames/cifar10.txt"', 'classnames = "names.txt"') + extra
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def uoft_copy(folder: Path, *, test: int, train: int) -> None:
    """uoft-cs/cifar10's layout: plain_text/{train,test}-00000-of-00001.parquet with img and label."""
    for split, n, seed in (("test", test, 1), ("train", train, 2)):
        helpers.write_parquet(folder, split, rows(n, seed), kind="zeroshot_classification", classnames=NAMES,
                              image_column="img", config="plain_text")


def test_the_registry_cards():
    full, few = load_tasks(["cifar10-linear-probe", "cifar10-few-shot"])
    (cifar,) = load_tasks("cifar10")
    assert full.source == cifar.source and full.classnames == cifar.classnames  # the same data and labels
    assert full.metrics == ("acc1", "acc5", "mean_per_class_recall") and full.kind.splits(full) == ("test", "train")
    assert few.shots == (1, 2, 4, 8, 16) and few.draws == 5 and few.main_metric == "acc1_16shot"
    for probe_card_, standard in zip(load_tasks(["cifar100-linear-probe", "cifar100-few-shot"]), load_tasks(["cifar100"]) * 2):
        assert probe_card_.source == standard.source and probe_card_.classnames == standard.classnames
    assert [t.name for t in load_tasks("linear-probes")] == ["cifar10-linear-probe", "cifar100-linear-probe"]
    assert [t.name for t in load_tasks("few-shot")] == ["cifar10-few-shot", "cifar100-few-shot"]


def test_the_full_probe_end_to_end_and_against_a_naive_fit(tmp_path, tiny_vtde):
    card = probe_card(tmp_path, "cifar10-linear-probe", test=12, train=40, validation=8)
    uoft_copy(tmp_path / "data" / "cifar10-linear-probe", test=12, train=40)
    assert main(["run", "--model", str(tiny_vtde), "--tasks", str(card), "--data-dir", str(tmp_path / "data"),
                 "--output-dir", str(tmp_path / "out"), "--workers", "0", "--bootstrap", "50"]) == 0
    written = json.loads(next((tmp_path / "out").rglob("cifar10-linear-probe.json")).read_text())
    assert set(written["metrics"]) == {"acc1", "mean_per_class_recall"}  # acc5 needs five classes
    details = written["details"]
    assert details["fit_images"] == 32 and details["validation_images"] == 8 and details["strength"] > 0
    assert set(written["intervals"]) == {"acc1", "mean_per_class_recall"}
    # The same features and λ, fitted here on all 40 train images, give the run's test ranks.
    from vtde_bench.encoders.load import load_model

    model = load_model(str(tiny_vtde), device="cpu")
    features = {s: model.encode_images([model.decode(b) for b, _ in rows(n, seed)]) for s, n, seed in (("test", 12, 1), ("train", 40, 2))}
    head = probe.fit(features["train"], torch.tensor([y for _, y in rows(40, 2)]), 4, details["strength"])
    ranks = probe.ranks(head.logits(features["test"]), torch.tensor([y for _, y in rows(12, 1)]))
    import pandas as pd

    samples = pd.read_parquet(next((tmp_path / "out").rglob("cifar10-linear-probe.samples.parquet"))).sort_values("row")
    assert samples["rank"].tolist() == ranks.tolist()
    assert written["metrics"]["acc1"] == (ranks == 1).double().mean().item()


def test_few_shot_fits_never_see_a_validation_image(tmp_path, tiny_vtde, monkeypatch):
    seen: dict[str, list[torch.Tensor]] = {"fit": [], "validation": []}
    real_fit, real_search = probe.fit, probe.search

    def fit(features, *args, **kwargs):
        seen["fit"].append(features.clone())
        return real_fit(features, *args, **kwargs)

    def search(train, validation, *args, **kwargs):
        seen["validation"].append(validation[0].clone())
        return real_search(train, validation, *args, **kwargs)

    monkeypatch.setattr(probe, "fit", fit)
    monkeypatch.setattr(probe, "search", search)
    card = probe_card(tmp_path, "cifar10-few-shot", test=8, train=40, validation=8)
    uoft_copy(tmp_path / "data" / "cifar10-few-shot", test=8, train=40)
    spec = load_card(card)
    result = evaluate(str(tiny_vtde), [spec], options=RunOptions(output_dir=None, data_dir=tmp_path / "data", workers=0,
                                                               bootstrap=20, shots=(1, 2), probe_seeds=2))["cifar10-few-shot"]
    assert set(result.metrics) == {"acc1_1shot", "acc1_2shot"} and result.main_metric == "acc1_2shot"
    assert [len(d["draws"]) for d in result.details["few_shot"].values()] == [2, 2]
    validation = torch.cat(seen["validation"]).unique(dim=0)
    assert len(validation) == 8
    for features in seen["fit"]:
        assert len(features) in (4, 8)  # k images of each of the 4 classes, nothing else
        assert not (features[:, None, :] == validation[None, :, :]).all(-1).any()
    for name, (hits, n) in result.counts.items():  # the mean over draws, exactly
        draws = result.details["few_shot"][name.split("_")[1]]["draws"]
        assert hits / n == pytest.approx(sum(d["acc1"] for d in draws) / len(draws), abs=1e-12)
    seen["fit"].clear()
    (tmp_path / "f").mkdir()
    full = load_card(probe_card(tmp_path / "f", "cifar10-linear-probe", test=8, train=40, validation=8))
    shutil.copytree(tmp_path / "data" / "cifar10-few-shot", tmp_path / "data" / "cifar10-linear-probe")
    evaluate(str(tiny_vtde), [full], options=RunOptions(output_dir=None, data_dir=tmp_path / "data", workers=0, bootstrap=0))
    refit = seen["fit"][-1]  # the full probe's refit does use validation, by CLIP's protocol: the spy sees it
    assert len(refit) == 40 and (refit[:, None, :] == validation[None, :, :]).all(-1).any(1).sum() == 8


@pytest.mark.parametrize("edit, problem", [
    (("shots = [1, 2, 4, 8, 16]", "shots = [3]"), "probe.shots' must list distinct numbers of images per class"),
    (("validation_samples = 8", "validation_samples = 40"), "validation_samples' must be between 1 and the 40"),
    (("draws = 5", "draws = 0"), "probe.draws' must be at least 1"),
])
def test_bad_probe_cards_name_the_field(tmp_path, edit, problem):
    card = probe_card(tmp_path, "cifar10-few-shot", test=8, train=40, validation=8)
    card.write_text(card.read_text().replace(*edit))
    with pytest.raises(UserError, match=problem):
        load_card(card)


def test_download_fetches_the_train_split_too(tmp_path, monkeypatch):
    from vtde_bench.data.download import download_task

    uoft_copy(tmp_path / "mirror" / "uoft-cs" / "cifar10", test=12, train=40)
    monkeypatch.setenv("VTDE_BENCH_HUB_MIRROR", str(tmp_path / "mirror"))
    (task,) = load_tasks("cifar10-linear-probe")
    dest = download_task(dataclasses.replace(task), tmp_path / "data")
    assert sorted(p.name for p in (dest / "plain_text").iterdir()) == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]


def test_pre_projection_features_are_the_vision_towers_pooled_output(tmp_path, tiny_vtde, tiny_open_clip, monkeypatch):
    seen = []
    real_fit = probe.fit
    monkeypatch.setattr(probe, "fit", lambda features, *a, **k: seen.append(features.clone()) or real_fit(features, *a, **k))
    card = probe_card(tmp_path, "cifar10-linear-probe", test=8, train=20, validation=4)
    uoft_copy(tmp_path / "data" / "cifar10-linear-probe", test=8, train=20)
    from vtde_bench.encoders.hf import HFDualEncoder

    projected = []
    real_embed = HFDualEncoder.embed_image_inputs
    monkeypatch.setattr(HFDualEncoder, "embed_image_inputs",
                        lambda self, inputs: projected.append(len(inputs["pixel_values"])) or real_embed(self, inputs))
    options = RunOptions(output_dir=None, data_dir=tmp_path / "data", workers=0, bootstrap=0, probe_features="pre-projection",
                         cache=False)
    result = evaluate(str(tiny_vtde), [str(card)], options=options)["cifar10-linear-probe"]
    assert projected == [1]  # only the load-time probe image: no split, the test split neither, is embedded twice
    monkeypatch.setattr(HFDualEncoder, "embed_image_inputs", real_embed)
    assert result.details["features"] == "pre-projection" and result.run.profile.kind_fields["probe"].endswith(
        "features=pre-projection search=clip")
    from vtde_bench.encoders.load import load_model

    model = load_model(str(tiny_vtde), device="cpu")
    inputs = model.image_inputs([model.decode(b) for b, _ in rows(20, 2)])
    with torch.no_grad():
        pooled = model.model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output
    refit = seen[-1]  # all 20 train images, in row order
    assert refit.shape == pooled.shape and refit.shape[1] != model.info.embedding_dim
    assert torch.allclose(refit, pooled, atol=1e-5)
    with pytest.raises(UserError, match="pre-projection needs a transformers checkpoint"):
        evaluate(f"local-dir:{tiny_open_clip}", [str(card)], options=options)
