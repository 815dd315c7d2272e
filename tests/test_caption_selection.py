"""SugarCrepe, the caption-selection kind: a fixture in HuggingFaceM4/SugarCrepe_<subset>'s schema (parquet
data/test-00000-of-00001-<hash>.parquet: image, tested_labels = [caption, negative_caption], true_label), photo-sized
COCO-like JPEGs; accuracy against SugarCrepe's own rule (pos_score > neg_score, embedded independently); ties; the
group's macro, micro and category means against naive ones; the paper's published row."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench.analysis import leaderboard
from vtde_bench.results import load_rows, published_results
from vtde_bench.tasks import groups, load_tasks

SUBSETS = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
SIZES = [(640, 427), (427, 640), (640, 480), (500, 333)]
WORDS = ["a dog on a red couch", "two cats near a window", "a man riding a horse", "a bowl of green apples",
         "a bus parked by a tree", "a girl holding an umbrella"]


def items(n: int, *, tie: bool = False) -> list[tuple[bytes, list[str]]]:
    rows = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        caption = WORDS[i % len(WORDS)]
        negative = caption if tie and i == 0 else " ".join(reversed(caption.split()))  # a swap, as SugarCrepe's
        rows.append((helpers.encode(Image.fromarray(pixels), "JPEG"), [caption, negative]))
    return rows


def write_hf_copy(folder, rows) -> None:
    """HuggingFaceM4's layout: data/test-00000-of-00001-<hash>.parquet with its three features."""
    import datasets

    names = sorted({c for _, caps in rows for c in caps})
    features = datasets.Features({"image": datasets.Image(), "tested_labels": datasets.Sequence(datasets.Value("string")),
                                  "true_label": datasets.ClassLabel(names=names)})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b, _ in rows],
                                     "tested_labels": [caps for _, caps in rows],
                                     "true_label": [names.index(caps[0]) for _, caps in rows]}, features=features)
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "test-00000-of-00001-a44553848a4ede30.parquet"))


def small(name: str, n: int):
    (task,) = load_tasks(name)
    return dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=n, num_captions=2 * n))


def test_the_cards_and_groups():
    cards = load_tasks("sugarcrepe")
    assert [c.name for c in cards] == [f"sugarcrepe-{s}" for s in SUBSETS]
    assert [c.source.num_samples for c in cards] == [1652, 788, 1406, 246, 666, 2062, 692]  # 7,512: swap_obj's 246
    assert {c.name for c in cards if c.source.pinned} == {"sugarcrepe-swap_obj", "sugarcrepe-swap_att"}
    assert all(c.source.unpinned for c in cards if not c.source.pinned)  # the others say why, and record the commit run
    group = groups()["sugarcrepe"]
    assert set(group.categories) == {"Replace", "Swap", "Add"} and groups()["sugarcrepe-micro"].aggregate == "size-weighted"


def test_sugarcrepe_end_to_end_equals_its_own_rule(tmp_path, tiny_clip):
    rows = items(9, tie=True)
    write_hf_copy(tmp_path / "data" / "sugarcrepe-swap_att", rows)
    spec = small("sugarcrepe-swap_att", len(rows))
    result = evaluate(str(tiny_clip), [spec], options=RunOptions(output_dir=tmp_path / "out", data_dir=tmp_path / "data",
                                                                 workers=0, bootstrap=50))["sugarcrepe-swap_att"]
    from vtde_bench.encoders.load import load_model

    model = load_model(str(tiny_clip), device="cpu")
    with torch.no_grad():
        image = model.encode_images([model.decode(b) for b, _ in rows])
        right = []
        for i, (_, (caption, negative)) in enumerate(rows):
            pos, neg = model.encode_texts([caption, negative]) @ image[i]
            right.append(bool(pos > neg))  # SugarCrepe's main_eval.py
    assert right[0] is False  # the tie (negative == caption) counts against the model
    assert result.metrics["acc"] == sum(right) / len(rows) and result.counts["acc"] == (sum(right), len(rows))
    samples = result.samples.sort_values("row")
    assert samples["correct"].tolist() == right and set(samples["candidates"]) == {2}
    assert "acc" in result.intervals and result.dataset.num_texts == 2 * len(rows)


def test_the_groups_means_equal_naive_ones_beside_the_papers_row(tmp_path):
    rng = random.Random(0)
    scores = {}
    for subset in SUBSETS:
        value = round(rng.random(), 4)
        scores[subset] = value
        helpers.write_result(tmp_path, slug="mine", task=f"sugarcrepe-{subset}", kind="caption_selection",
                             main_metric="acc", metrics={"acc": value})
    records = load_rows(tmp_path) + published_results()
    sizes = {s: t.source.num_samples for s, t in zip(SUBSETS, load_tasks("sugarcrepe"))}
    macro = leaderboard.build(records, group=groups()["sugarcrepe"])
    mine = next(r for r in macro.rows if r.model == "mine")
    assert mine.average == pytest.approx(sum(scores.values()) / 7, abs=1e-12)
    assert mine.categories["Swap"] == pytest.approx((scores["swap_obj"] + scores["swap_att"]) / 2, abs=1e-12)
    paper = next(r for r in macro.rows if r.model == "ViT-B-32 / openai (SugarCrepe paper, published)")
    assert paper.scores["sugarcrepe-replace_obj"] == 0.9092 and paper.rank is None
    assert paper.categories["Add"] == pytest.approx((0.7721 + 0.6879) / 2, abs=1e-12)
    micro = leaderboard.build(records, group=groups()["sugarcrepe-micro"])
    mine = next(r for r in micro.rows if r.model == "mine")
    assert mine.average == pytest.approx(sum(scores[s] * sizes[s] for s in SUBSETS) / sum(sizes.values()), abs=1e-12)


def test_the_papers_row_is_whole_numbers_of_items():
    """The published percentages, each times its subset's size, are whole numbers of items: a check of the row's
    provenance that holds only with swap_obj's 246 (151/245 would be 61.63, not the paper's 61.38)."""
    sizes = {t.name: t.source.num_samples for t in load_tasks("sugarcrepe")}
    paper = {r.task_name: r.metrics["acc"] for r in published_results()
             if r.model_name == "ViT-B-32 / openai (SugarCrepe paper, published)"}
    assert set(paper) == set(sizes)
    for task, value in paper.items():
        hits = round(value * sizes[task])
        assert round(100 * hits / sizes[task], 2) == round(100 * value, 2), task


def write_original_copy(folder, rows) -> None:
    """SugarCrepe's own layout: data/<subset>.json, an object keyed by item id, beside COCO's val2017/ images."""
    import json

    (folder / "val2017").mkdir(parents=True)
    (folder / "data").mkdir()
    records = {}
    for i, (data, (caption, negative)) in enumerate(rows):
        name = f"{139 + 17 * i:012d}.jpg"  # COCO's file names
        (folder / "val2017" / name).write_bytes(data)
        records[str(i)] = {"filename": name, "caption": caption, "negative_caption": negative}
    (folder / "data" / "swap_att.json").write_text(json.dumps(records, indent=4))


def test_the_original_json_and_coco_layout_gives_the_hub_copys_numbers(tmp_path, tiny_clip):
    rows = items(8, tie=True)
    write_hf_copy(tmp_path / "hub" / "sugarcrepe-swap_att", rows)
    write_original_copy(tmp_path / "original" / "sugarcrepe-swap_att", rows)
    spec = small("sugarcrepe-swap_att", len(rows))
    results = [evaluate(str(tiny_clip), [spec], options=RunOptions(output_dir=tmp_path / f"out-{d}", data_dir=tmp_path / d,
                                                                   workers=0, bootstrap=50))["sugarcrepe-swap_att"]
               for d in ("hub", "original")]
    hub, original = results
    assert original.dataset.layout == "original" and hub.dataset.layout == "parquet"
    assert original.metrics == hub.metrics and original.intervals == hub.intervals
    assert original.dataset.fingerprint == hub.dataset.fingerprint  # the same content, whatever the layout
    assert sorted(original.samples["key"]) == [str(i) for i in range(8)]  # the JSON's own item ids


def test_the_original_layout_names_a_missing_image(tmp_path, tiny_clip):
    from vtde_bench.errors import UserError

    rows = items(3)
    folder = tmp_path / "original" / "sugarcrepe-swap_att"
    write_original_copy(folder, rows)
    next((folder / "val2017").iterdir()).unlink()
    with pytest.raises(UserError, match="which is not in .*val2017; put the source's images there"):
        evaluate(str(tiny_clip), [small("sugarcrepe-swap_att", 3)],
                 options=RunOptions(output_dir=tmp_path / "out", data_dir=tmp_path / "original", workers=0))


@pytest.mark.parametrize("field, value", [("file", "../../swap_att.json"), ("images", "/srv/coco/val2017")])
def test_the_original_files_must_lie_inside_the_copy(tmp_path, field, value):
    from vtde_bench.errors import UserError
    from vtde_bench.tasks import load_card

    (task,) = load_tasks("sugarcrepe-swap_att")
    text = task.card_path.read_text().replace(f'{field} = "{getattr(task.source.original, field)}"', f'{field} = "{value}"')
    card = tmp_path / "card.toml"
    card.write_text(text)
    with pytest.raises(UserError, match=f"source.original.{field}' .* must name a path inside the copy's folder"):
        load_card(card)
