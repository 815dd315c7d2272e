"""Winoground and ARO, end to end on fixtures in their copies' schemas, against naive references.

- ARO VG-Relation / VG-Attribution (mteb/ARO-Visual-Relation and -Attribution's parquet: `image` the whole Visual
  Genome photo, shared by several items, `true_caption`, `false_caption`, `relation_name` or `attributes`, `bbox`
  {x, y, w, h} float32): the image cropped as ARO's __getitem__ crops it, once; micro accuracy and ARO's macro mean
  (symmetric relations left out; attribute pairs with fewer than 25 items left out);
- ARO COCO-Order (`images`, `correct_caption`, `hard_text_1..4`), with a shuffle equal to its caption;
- Winoground (facebook/winoground's parquet: id, image_0, image_1, caption_0, caption_1, tag, secondary_tag,
  num_main_preds, collapsed_tag): text, image and group scores by the paper's formulas;
- the compositionality group, and MTEB's published row.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench.analysis import leaderboard
from vtde_bench.errors import UserError
from vtde_bench.kinds.caption_selection import macro_means
from vtde_bench.results import load_rows, published_results
from vtde_bench.tasks import groups, load_tasks

SIZES = [(640, 427), (427, 640), (500, 333), (333, 500)]
WORDS = ["a dog on a red couch", "two cats near a window", "a man riding a horse", "a bowl of green apples",
         "a bus parked by a tree", "a girl holding an umbrella"]


def photo(i: int) -> bytes:
    w, h = SIZES[i % len(SIZES)]
    rng = np.random.default_rng(i)
    pixels = np.clip(rng.normal(128, 60, (h, w, 3)), 0, 255).astype(np.uint8)
    pixels[: h // 2, : w // 3] = rng.integers(0, 256, 3)  # a block, so crops of one photo differ
    return helpers.encode(Image.fromarray(pixels), "JPEG", quality=90)


def small(name: str, n: int, **source):
    (task,) = load_tasks(name)
    return dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=n, **source))


def run(model, spec, data_dir, tmp_path, **options):
    opts = RunOptions(output_dir=tmp_path / "out", data_dir=data_dir, workers=0, bootstrap=50, **options)
    return evaluate(str(model), [spec], options=opts)[spec.name]


def aro_crop(data: bytes, box: dict) -> Image.Image:
    """ARO's VG_Relation.__getitem__: open, convert('RGB'), crop((x, y, x + w, y + h))."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return image.crop((box["x"], box["y"], box["x"] + box["w"], box["y"] + box["h"]))


REFERENCE_SCORES: list[float] = []  # the right caption's score of each item of the last reference_right call


def reference_right(model, rows, candidates) -> list[bool]:
    """Each item right when its caption scores strictly above all its negatives, every item embedded on its own."""
    out = []
    REFERENCE_SCORES.clear()
    with torch.no_grad():
        for image, texts in zip(rows, candidates):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            emb = model.encode_images([model.decode(buffer.getvalue())])[0]
            scores = model.encode_texts(texts) @ emb
            out.append(bool((scores[0] > scores[1:]).all()))
            REFERENCE_SCORES.append(float(scores[0]))
    return out


# ----------------------------------------------------------------------------- ARO VG-Relation / VG-Attribution


def vg_items(n: int, group_of) -> list[dict]:
    """n items over n // 3 + 1 photos (items share photos, as VG's do), each with its own box, photo-sized."""
    items = []
    for i in range(n):
        data = photo(i // 3)
        w, h = Image.open(io.BytesIO(data)).size
        box = {"x": float(17 * i % (w // 2)), "y": float(11 * i % (h // 2)), "w": float(w // 3 + 7 * i % 50),
               "h": float(h // 3 + 5 * i % 40)}
        caption = WORDS[i % len(WORDS)]
        items.append({"image": data, "true_caption": caption, "false_caption": " ".join(reversed(caption.split())),
                      "bbox": box, "group": group_of(i)})
    return items


def write_vg(folder, items, group_column: str, group_feature) -> None:
    import datasets

    features = datasets.Features({
        "image": datasets.Image(), "true_caption": datasets.Value("string"), "false_caption": datasets.Value("string"),
        group_column: group_feature,
        "bbox": {k: datasets.Value("float32") for k in ("x", "y", "w", "h")}})
    ds = datasets.Dataset.from_dict({
        "image": [{"bytes": it["image"], "path": None} for it in items],
        "true_caption": [it["true_caption"] for it in items], "false_caption": [it["false_caption"] for it in items],
        group_column: [it["group"] for it in items], "bbox": [it["bbox"] for it in items]}, features=features)
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))


RELATIONS = ["on", "wearing", "near", "holding"]  # "near" is one of ARO's symmetric relations


def test_vg_relation_crops_once_and_gives_aros_micro_and_macro(tmp_path, tiny_clip):
    from vtde_bench.encoders.load import load_model

    items = vg_items(14, lambda i: RELATIONS[i % 4])
    write_vg(tmp_path / "data" / "aro-vg-relation", items, "relation_name", __import__("datasets").Value("string"))
    result = run(tiny_clip, small("aro-vg-relation", len(items)), tmp_path / "data", tmp_path)

    model = load_model(str(tiny_clip), device="cpu")
    right = reference_right(model, [aro_crop(it["image"], it["bbox"]) for it in items],
                            [[it["true_caption"], it["false_caption"]] for it in items])
    assert result.metrics["acc"] == pytest.approx(sum(right) / len(items), abs=1e-12)
    # Each item's score is that of ARO's crop: the box cut once, as ARO cuts it (the whole photo scores otherwise).
    assert result.samples.sort_values("row")["right_score"].tolist() == pytest.approx(REFERENCE_SCORES, abs=1e-5)
    assert 0 < sum(right) < len(right)
    counted = {}
    for it, ok in zip(items, right):
        if it["group"] != "near":  # left out of ARO's macro mean: a symmetric relation
            counted.setdefault(it["group"], []).append(ok)
    macro = sum(sum(v) / len(v) for v in counted.values()) / len(counted)
    assert result.metrics["acc_macro"] == pytest.approx(macro, abs=1e-12) and result.main_score == result.metrics["acc_macro"]
    assert set(result.per_group["acc_macro"]) == {"relation_name=on", "relation_name=wearing", "relation_name=holding"}
    assert result.details["groups_counted"] == 3 and result.details["groups_left_out"] == 1
    assert {"acc", "acc_macro"} <= set(result.intervals)
    # Items of one photo are different images once cropped: to the fingerprint, the cache and the per-sample table.
    assert result.samples["image_sha256"].nunique() == len(items)


def test_a_copy_already_cropped_is_refused(tmp_path, tiny_clip):
    items = vg_items(6, lambda i: "on")
    for it in items:  # the crop stored in place of the photo, the box still in the photo's coordinates
        it["image"] = helpers.encode(aro_crop(it["image"], it["bbox"]), "PNG")
        it["bbox"] = {**it["bbox"], "x": it["bbox"]["x"] + 40, "y": it["bbox"]["y"] + 40}
    write_vg(tmp_path / "data" / "aro-vg-relation", items, "relation_name", __import__("datasets").Value("string"))
    with pytest.raises(UserError, match="look cropped already"):
        run(tiny_clip, small("aro-vg-relation", len(items)), tmp_path / "data", tmp_path)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))


def test_vg_attribution_keeps_pairs_of_at_least_min_items(tmp_path, tiny_clip):
    import datasets

    pairs = [["white", "black"]] * 5 + [["red", "green"]] * 4 + [["small", "large"]] * 2
    items = vg_items(len(pairs), lambda i: pairs[i])
    write_vg(tmp_path / "data" / "aro-vg-attribution", items, "attributes", datasets.Sequence(datasets.Value("string")))
    spec = small("aro-vg-attribution", len(items))
    spec = dataclasses.replace(spec, min_group_items=3)  # the card's 25, scaled to the fixture
    result = run(tiny_clip, spec, tmp_path / "data", tmp_path)
    from vtde_bench.encoders.load import load_model

    right = reference_right(load_model(str(tiny_clip), device="cpu"), [aro_crop(it["image"], it["bbox"]) for it in items],
                            [[it["true_caption"], it["false_caption"]] for it in items])
    white, red = right[:5], right[5:9]  # small_large has 2 items, under 3: left out
    assert result.metrics["acc_macro"] == pytest.approx((sum(white) / 5 + sum(red) / 4) / 2, abs=1e-12)
    assert result.metrics["acc"] == pytest.approx(sum(right) / len(right), abs=1e-12)
    assert set(result.per_group["acc_macro"]) == {"attributes=white_black", "attributes=red_green"}  # ARO's "a_b" keys


def test_the_macro_statistic_equals_a_naive_one_per_resample():
    rng = np.random.default_rng(0)
    groups = rng.integers(-1, 4, 200)
    correct = rng.random(200) < 0.6
    idx = rng.integers(0, 200, (7, 200))
    got = macro_means(groups[idx], correct[idx].astype(float), 4)
    for b in range(7):
        g, c = groups[idx[b]], correct[idx[b]]
        naive = np.mean([c[g == k].mean() for k in range(4) if (g == k).any()])
        assert got[b] == pytest.approx(naive, abs=1e-12)


def test_the_aro_cards():
    relation, attribution, coco, flickr = (load_tasks(n)[0] for n in
                                           ("aro-vg-relation", "aro-vg-attribution", "aro-coco-order", "aro-flickr-order"))
    assert relation.source.crop_column == attribution.source.crop_column == "bbox"
    assert coco.source.crop_column is None and flickr.source.crop_column is None  # whole photos, never cropped
    assert len(relation.skip_groups) == 157 and {"near", "by", "on the side of"} <= set(relation.skip_groups)
    assert attribution.min_group_items == 25 and not attribution.skip_groups
    assert relation.main_metric == attribution.main_metric == "acc_macro" and coco.metrics == ("acc",)
    assert [t.source.num_samples for t in (relation, attribution, coco, flickr)] == [23937, 28748, 25010, 5000]


# ----------------------------------------------------------------------------- ARO COCO-Order


def test_coco_order_counts_a_shuffle_equal_to_its_caption_wrong(tmp_path, tiny_clip):
    import datasets

    rows = []
    for i in range(7):
        words = WORDS[i % len(WORDS)].split()
        shuffles = [" ".join(words[k:] + words[:k]) for k in (1, 2, 3)] + [" ".join(reversed(words))]
        if i == 0:
            shuffles[2] = " ".join(words)  # a shuffle that gave the caption back
        rows.append({"images": {"bytes": photo(i), "path": None}, "correct_caption": " ".join(words),
                     **{f"hard_text_{k + 1}": s for k, s in enumerate(shuffles)}})
    features = datasets.Features({"images": datasets.Image(), "correct_caption": datasets.Value("string"),
                                  **{f"hard_text_{k}": datasets.Value("string") for k in range(1, 5)}})
    folder = tmp_path / "data" / "aro-coco-order" / "data"
    folder.mkdir(parents=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    result = run(tiny_clip, small("aro-coco-order", 7, num_captions=35), tmp_path / "data", tmp_path)
    from vtde_bench.encoders.load import load_model

    images = [Image.open(io.BytesIO(r["images"]["bytes"])) for r in rows]
    right = reference_right(load_model(str(tiny_clip), device="cpu"), images,
                            [[r["correct_caption"], *(r[f"hard_text_{k}"] for k in range(1, 5))] for r in rows])
    assert right[0] is False and result.metrics["acc"] == pytest.approx(sum(right) / 7, abs=1e-12)
    assert result.details["items_with_a_negative_equal_to_the_caption"] == 1
    assert any("identical to the right one" in w for w in result.warnings)
    assert set(result.samples["candidates"]) == {5}


# ----------------------------------------------------------------------------- Winoground


def write_winoground(folder, items) -> None:
    """facebook/winoground's parquet: data/test-00000-of-00001.parquet with its nine features."""
    import datasets

    features = datasets.Features({
        "id": datasets.Value("int32"), "image_0": datasets.Image(), "image_1": datasets.Image(),
        "caption_0": datasets.Value("string"), "caption_1": datasets.Value("string"), "tag": datasets.Value("string"),
        "secondary_tag": datasets.Value("string"), "num_main_preds": datasets.Value("int32"),
        "collapsed_tag": datasets.Value("string")})
    ds = datasets.Dataset.from_list([{**it, "image_0": {"bytes": it["image_0"], "path": None},
                                      "image_1": {"bytes": it["image_1"], "path": None}} for it in items], features=features)
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))


def winoground_items(n: int) -> list[dict]:
    items = []
    for i in range(n):
        words = WORDS[i % len(WORDS)].split()
        other = " ".join(words[2:] + words[:2])
        png = i == 3  # an RGBA PNG, as some of Winoground's images are
        first = photo(2 * i) if not png else helpers.encode(Image.open(io.BytesIO(photo(2 * i))).convert("RGBA"), "PNG")
        second = photo(2 * i) if i == 0 else photo(2 * i + 1)  # item 0: the same image twice, a tie
        items.append({"id": i, "image_0": first, "image_1": second, "caption_0": " ".join(words), "caption_1": other,
                      "tag": "Object", "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": "Object"})
    return items


def test_winoground_text_image_and_group_scores_equal_the_papers_formulas(tmp_path, tiny_clip):
    from vtde_bench.encoders.load import load_model

    items = winoground_items(9)
    write_winoground(tmp_path / "data" / "winoground", items)
    result = run(tiny_clip, small("winoground", len(items)), tmp_path / "data", tmp_path)

    model = load_model(str(tiny_clip), device="cpu")
    text, image, group = [], [], []
    with torch.no_grad():
        for it in items:
            i0, i1 = model.encode_images([model.decode(it["image_0"]), model.decode(it["image_1"])])
            c0, c1 = model.encode_texts([it["caption_0"], it["caption_1"]])
            s = {"c0_i0": float(c0 @ i0), "c0_i1": float(c0 @ i1), "c1_i0": float(c1 @ i0), "c1_i1": float(c1 @ i1)}
            t = s["c0_i0"] > s["c1_i0"] and s["c1_i1"] > s["c0_i1"]
            im = s["c0_i0"] > s["c0_i1"] and s["c1_i1"] > s["c1_i0"]
            text.append(t), image.append(im), group.append(t and im)
    assert image[0] is False  # the same image twice: a tie, against the model
    assert result.metrics == pytest.approx({"text_score": sum(text) / 9, "image_score": sum(image) / 9,
                                            "group_score": sum(group) / 9}, abs=1e-12)
    assert result.counts["group_score"] == (sum(group), 9) and result.main_score == result.metrics["group_score"]
    assert result.dataset.num_images == 18 and result.dataset.num_texts == 18
    samples = result.samples.sort_values("key", key=lambda k: k.astype(int))
    assert samples["text_correct"].tolist() == text and samples["group_correct"].tolist() == group
    assert {"text_score", "image_score", "group_score"} <= set(result.intervals)


def test_winoground_limit_keeps_whole_items_and_the_fingerprint_pairs_images(tmp_path, tiny_clip):
    items = winoground_items(5)
    write_winoground(tmp_path / "data" / "winoground", items)
    limited = run(tiny_clip, small("winoground", 5), tmp_path / "data", tmp_path, limit=2)
    assert limited.dataset.num_images == 4 and len(limited.samples) == 2

    from vtde_bench.data import load_task_data

    swapped = [dict(it) for it in items]  # the same images and captions, paired the other way in two items
    swapped[1]["image_1"], swapped[2]["image_1"] = items[2]["image_1"], items[1]["image_1"]
    write_winoground(tmp_path / "other" / "winoground", swapped)
    a = load_task_data(small("winoground", 5), data_dir=tmp_path / "data")
    b = load_task_data(small("winoground", 5), data_dir=tmp_path / "other")
    assert a.fingerprint != b.fingerprint and a.items[1] == ("1", (2, 3))


def test_winoground_card():
    (task,) = load_tasks("winoground")
    assert task.source.hub == "facebook/winoground" and task.source.pinned and task.source.num_samples == 400
    assert task.source.image_columns == ("image_0", "image_1") and task.metrics == ("text_score", "image_score", "group_score")


# ----------------------------------------------------------------------------- the group and the published rows


def test_the_compositionality_group_and_mtebs_row(tmp_path):
    group = groups()["compositionality"]
    assert set(group.categories) == {"SugarCrepe", "Winoground", "ARO"}
    assert len(group.tasks) == 12
    names = {t.name: t for t in load_tasks("compositionality")}
    for i, (name, task) in enumerate(sorted(names.items())):
        helpers.write_result(tmp_path, slug="mine", task=name, kind=task.type, main_metric=task.main_metric,
                             metrics={m: 0.01 * (i + 1) for m in task.metrics})
    table = leaderboard.build(load_rows(tmp_path) + published_results(), group=group)
    mine = next(r for r in table.rows if r.model == "mine")
    expected = {name: 0.01 * (i + 1) for i, name in enumerate(sorted(names))}
    assert mine.average == pytest.approx(sum(expected.values()) / 12, abs=1e-12)
    assert mine.categories["ARO"] == pytest.approx(sum(v for k, v in expected.items() if k.startswith("aro-")) / 4, abs=1e-12)
    mteb = next(r for r in table.rows if r.model == "ViT-B-32 / openai (MTEB results, published)")
    assert mteb.scores["winoground"] == 0.09 and mteb.rank is None  # incomplete (no SugarCrepe subsets): unranked
    published = {(r.task_name, k): v for r in published_results() if "MTEB results" in r.model_name
                 for k, v in r.metrics.items()}
    assert published[("winoground", "text_score")] == 0.3125 and published[("aro-vg-relation", "acc")] == 0.5176
    assert ("aro-vg-relation", "acc_macro") not in published  # MTEB reports no macro mean: none is made up


def test_a_layout_of_fixed_columns_cannot_hold_the_cards_columns(tmp_path, tiny_clip):
    helpers.write_webdataset(tmp_path / "data" / "aro-coco-order", "test", helpers.retrieval_rows(3), kind="retrieval")
    with pytest.raises(UserError, match="a webdataset copy has none of the columns source.caption_columns names"):
        run(tiny_clip, small("aro-coco-order", 3), tmp_path / "data", tmp_path)
