"""vtde_bench.data: every local layout, layout-independent fingerprints, --data-dir, errors, limit, keys, decoding.

Fixture datasets are written in the real layouts (hub parquet, `save_to_disk`,
CLIP_benchmark webdataset, imagefolder) by the writers in tests/helpers.py;
everything stays offline under tmp_path.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import helpers
from helpers import COLOUR_NAMES
from vtde_bench.data import LAYOUTS, content_fingerprint, detect_layouts, load_task_data
from vtde_bench.imaging import decode_image
from vtde_bench.errors import UserError
from vtde_bench.tasks import Task, load_card

CLASSES = COLOUR_NAMES
HUB_SOURCE = {"hub": "uoft-cs/cifar10", "revision": "0b2714987fa478483af9968de7c934580d0bb9a2"}


# ----------------------------------------------------------------------------- small tools


class RecordingProgress:
    """A `Progress` (vtde_bench/progress.py) that remembers its bars and notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.bars: list[tuple[str, int | None, list[int]]] = []

    @contextlib.contextmanager
    def bar(self, description, total):
        advanced: list[int] = []

        class _Bar:
            def advance(self, n: int = 1) -> None:
                advanced.append(n)

        self.bars.append((description, total, advanced))
        yield _Bar()

    def note(self, message: str) -> None:
        self.notes.append(message)


def make_task(tmp_path: Path, kind: str, *, source: dict, name: str = "t", classnames=CLASSES) -> Task:
    """Write a card (with its class-name and template files) and parse it as the CLI would."""
    card = helpers.write_card(tmp_path / "cards" / name / f"{name}.toml", name=name, kind=kind, source=source,
                              classnames=classnames)
    return load_card(card)


def local_task(tmp_path: Path, folder: Path, kind: str, n: int, *, split: str = "test", classnames=CLASSES, **extra) -> Task:
    return make_task(tmp_path, kind, source={"path": str(folder), "split": split, "num_samples": n, **extra},
                     classnames=classnames)


def write_layout(layout: str, folder: Path, rows, kind: str, *, split: str = "test", classnames=CLASSES, **kw) -> dict:
    """Write rows in one layout; returns the extra card source fields that layout needs."""
    extra: dict = {}
    if layout == "parquet":
        helpers.write_parquet(folder, split, rows, kind=kind, classnames=classnames)
    elif layout == "parquet-config":  # uoft-cs/cifar10: plain_text/test-00000-of-00001.parquet, img + label
        helpers.write_parquet(folder, split, rows, kind=kind, classnames=classnames, config="plain_text", image_column="img")
        extra = {"config": "plain_text", "image_column": "img"}
    elif layout == "parquet-cifar100":  # uoft-cs/cifar100: cifar100/test-...parquet, img + fine_label
        helpers.write_parquet(folder, split, rows, kind=kind, classnames=classnames, config="cifar100",
                              image_column="img", target_column="fine_label")
        extra = {"config": "cifar100", "image_column": "img", "label_column": "fine_label"}
    elif layout == "arrow":
        helpers.write_arrow(folder, split, rows, kind=kind, classnames=classnames)
    elif layout == "webdataset":
        helpers.write_webdataset(folder, split, rows, kind=kind, classnames=classnames, **kw)
    elif layout == "imagefolder":
        helpers.write_imagefolder(folder, split, rows, classnames=classnames)
    else:
        raise AssertionError(layout)
    return extra


def load_layout(tmp_path: Path, layout: str, rows, kind: str, *, name: str = "t", limit=None, **kw):
    folder = tmp_path / layout / name
    extra = write_layout(layout, folder, rows, kind, **kw)
    task = local_task(tmp_path / layout, folder, kind, len(rows), **extra)
    return load_task_data(task, limit=limit)


def write_parquet_table(path: Path, columns: dict, features=None) -> Path:
    """One parquet file with arbitrary columns (for schemas the standard writer cannot make)."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    return path


def _image_features(caption):
    """An image column and a 'caption' column of the given feature (text when None)."""
    import datasets

    return datasets.Features({"image": datasets.Image(), "caption": caption or datasets.Value("string")})


def image_column(rows) -> list[dict]:
    return [{"bytes": image, "path": None} for image, _ in rows]


def sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def assert_one_line_user_error(excinfo, *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def class_rows():
    """20 classification rows over the six colour classes."""
    return helpers.classification_rows(20, CLASSES, seed=5)


@pytest.fixture(scope="module")
def text_rows():
    """11 retrieval rows with 1 to 6 captions each."""
    return helpers.retrieval_rows(11, seed=6)


# ----------------------------------------------------------------------------- 1. every layout loads


CLASSIFICATION_LAYOUTS = ("parquet", "parquet-config", "parquet-cifar100", "arrow", "webdataset", "imagefolder")
RETRIEVAL_LAYOUTS = ("parquet", "parquet-config", "arrow", "webdataset")


@pytest.mark.parametrize("layout", CLASSIFICATION_LAYOUTS)
def test_classification_loads_in_every_layout(tmp_path, class_rows, layout):
    data = load_layout(tmp_path, layout, class_rows, "zeroshot_classification")
    assert len(data) == len(class_rows) == len(data.keys) == len(data.labels)
    assert data.captions is None
    assert data.layout == layout.split("-")[0]
    by_hash = {sha(image): label for image, label in class_rows}
    for index, digest in enumerate(data.image_hashes()):
        blob = data.image_bytes(index)
        assert digest == sha(blob)
        assert by_hash[digest] == data.labels[index]  # each image keeps its own label
        assert decode_image(blob).size == (32, 32)


@pytest.mark.parametrize("layout", RETRIEVAL_LAYOUTS)
def test_retrieval_loads_in_every_layout(tmp_path, text_rows, layout):
    data = load_layout(tmp_path, layout, text_rows, "retrieval")
    assert data.labels is None
    assert len(data) == len(text_rows)
    by_hash = {sha(image): caps for image, caps in text_rows}
    for index, digest in enumerate(data.image_hashes()):
        assert digest == sha(data.image_bytes(index)) and data.captions[index] == by_hash[digest]
    assert all(isinstance(c, str) for caps in data.captions for c in caps)
    assert sorted(len(c) for c in data.captions) == sorted(len(c) for _, c in text_rows)


def test_webdataset_layout_is_the_clip_benchmark_one(tmp_path, class_rows):
    """Guards the trap in shared/TRAPS.md: the folder also holds .txt files that the `text` builder would pick."""
    folder = tmp_path / "wds"
    helpers.write_webdataset(folder, "test", class_rows, kind="zeroshot_classification", classnames=CLASSES, shard_size=6)
    assert sorted(p.name for p in (folder / "test").iterdir()) == ["0.tar", "1.tar", "2.tar", "3.tar", "nshards.txt"]
    assert (folder / "dataset_type.txt").is_file() and (folder / "zeroshot_classification_templates.txt").is_file()
    data = load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows)))
    assert data.layout == "webdataset"
    assert data.labels == [label for _, label in class_rows]


@pytest.mark.parametrize("fmt,ext", [("WEBP", "webp"), ("JPEG", "jpg"), ("PNG", "png")])
def test_webdataset_image_formats(tmp_path, fmt, ext):
    rows = [(helpers.encode(helpers.colour_image(CLASSES[i % 6], seed=i), fmt), i % 6) for i in range(9)]
    folder = tmp_path / ext / "t"
    helpers.write_webdataset(folder, "test", rows, kind="zeroshot_classification", classnames=CLASSES, ext=ext)
    data = load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(rows)))
    assert data.labels == [label for _, label in rows]
    assert [data.image_bytes(i) for i in range(len(data))] == [image for image, _ in rows]  # bytes as stored, not re-encoded
    image = decode_image(data.image_bytes(0))
    assert image.mode == "RGB" and image.size == (32, 32)
    assert np.abs(np.asarray(image, dtype=int).mean(axis=(0, 1)) - helpers.COLOURS["red"]).max() < 30


def test_webdataset_captions_are_txt_lines(tmp_path):
    image = helpers.png_bytes(helpers.colour_image("red", seed=0))
    folder = tmp_path / "t"
    (folder / "test").mkdir(parents=True)
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for name, payload in (("s0000000.png", image), ("s0000000.txt", b"  a red cat \n\nthe red square\n")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (folder / "test" / "nshards.txt").write_text("1\n")
    (folder / "dataset_type.txt").write_text("retrieval\n")
    data = load_task_data(local_task(tmp_path, folder, "retrieval", 1))
    # Issue #13 item 8: blank lines were dropped (and lines stripped) while CLIP_benchmark keeps every line as it is.
    assert data.captions == [["  a red cat ", "", "the red square"]] == [b"  a red cat \n\nthe red square\n".decode().splitlines()]
    assert data.blank_captions == 1


def test_webdataset_shards_may_mix_image_types(tmp_path):
    """CLIP_benchmark reads webp, png, jpg or jpeg per sample (the first present, in that order); `datasets`
    refused such a shard as "not in WebDataset format", which we reported as empty or damaged files."""
    folder = tmp_path / "t"
    (folder / "test").mkdir(parents=True)
    pictures = {c: helpers.colour_image(c, seed=i) for i, c in enumerate(("red", "green", "blue", "white", "black"))}
    members = [("s0.jpg", helpers.encode(pictures["red"], "JPEG")), ("s0.txt", b"one"),
               ("s1.png", helpers.png_bytes(pictures["green"])), ("s1.txt", b"two"),
               ("s2.webp", helpers.encode(pictures["blue"], "WEBP", lossless=True)), ("s2.txt", b"three"),
               ("s3.jpeg", helpers.encode(pictures["white"], "JPEG")), ("s3.txt", b"four"),
               # two images in one sample: webp comes first in CLIP_benchmark's order
               ("s4.png", helpers.png_bytes(pictures["red"])), ("s4.webp", helpers.encode(pictures["black"], "WEBP", lossless=True)),
               ("s4.txt", b"five"), ("s5.jpg", helpers.encode(pictures["green"], "JPEG")), ("s5.txt", b"six")]
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (folder / "test" / "nshards.txt").write_text("1\n")
    data = load_task_data(local_task(tmp_path, folder, "retrieval", 6))
    assert data.keys == ["s0", "s1", "s2", "s3", "s4", "s5"]
    means = [np.asarray(decode_image(data.image_bytes(i)), dtype=float).mean(axis=(0, 1)) for i in range(6)]
    for mean, colour in zip(means, ("red", "green", "blue", "white", "black", "green")):
        assert np.abs(mean - helpers.COLOURS[colour]).max() < 30
    assert data.captions == [["one"], ["two"], ["three"], ["four"], ["five"], ["six"]]


def test_parquet_plain_string_caption_column(tmp_path, text_rows):
    folder = tmp_path / "t"
    write_parquet_table(folder / "test-00000-of-00001.parquet",
                        {"image": image_column(text_rows), "caption": [caps[0] for _, caps in text_rows]},
                        features=_image_features(caption=None))
    data = load_task_data(local_task(tmp_path, folder, "retrieval", len(text_rows), caption_column="caption"))
    assert data.captions == [[caps[0]] for _, caps in text_rows]


def test_parquet_with_extra_columns_and_several_shards(tmp_path, class_rows):
    """uoft-cs/cifar100 carries coarse_label beside fine_label; big splits come in -0000k-of-0000n shards."""
    import datasets

    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=list(CLASSES)),
                                  "coarse_label": datasets.Value("int64")})
    folder = tmp_path / "t"
    for shard, part in enumerate((class_rows[:12], class_rows[12:])):
        write_parquet_table(folder / "cifar100" / f"test-{shard:05d}-of-00002.parquet",
                            {"img": image_column(part), "fine_label": [y for _, y in part], "coarse_label": [99] * len(part)},
                            features=features)
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), config="cifar100", image_column="img",
                      label_column="fine_label")
    data = load_task_data(task)
    assert data.labels == [y for _, y in class_rows]
    assert data.keys == [str(i) for i in range(len(class_rows))]
    single = load_layout(tmp_path, "parquet", class_rows, "zeroshot_classification")
    assert data.fingerprint == single.fingerprint


# ----------------------------------------------------------------------------- 2. fingerprints


def test_same_classification_data_same_fingerprint_in_every_layout(tmp_path, class_rows):
    loaded = {layout: load_layout(tmp_path, layout, class_rows, "zeroshot_classification") for layout in CLASSIFICATION_LAYOUTS}
    reference = loaded["parquet"]
    assert reference.fingerprint and len(reference.fingerprint) == 64
    for layout, data in loaded.items():
        assert data.fingerprint == reference.fingerprint, layout
        assert len(data) == len(class_rows), layout
        assert collections.Counter(data.labels) == collections.Counter(y for _, y in class_rows), layout


def test_same_retrieval_data_same_fingerprint_in_every_layout(tmp_path, text_rows):
    loaded = {layout: load_layout(tmp_path, layout, text_rows, "retrieval") for layout in RETRIEVAL_LAYOUTS}
    reference = loaded["parquet"]
    expected = sorted(map(tuple, (caps for _, caps in text_rows)))
    for layout, data in loaded.items():
        assert data.fingerprint == reference.fingerprint, layout
        assert len(data) == len(text_rows), layout
        assert sorted(map(tuple, data.captions)) == expected, layout


def test_same_webp_data_same_fingerprint_in_webdataset_and_parquet(tmp_path):
    rows = [(helpers.encode(helpers.colour_image(CLASSES[i % 6], seed=i), "WEBP"), i % 6) for i in range(8)]
    wds = load_layout(tmp_path, "webdataset", rows, "zeroshot_classification", ext="webp")
    parquet = load_layout(tmp_path, "parquet", rows, "zeroshot_classification")
    assert wds.fingerprint == parquet.fingerprint


def _changed_label(rows):
    rows = list(rows)
    image, label = rows[3]
    rows[3] = (image, (label + 1) % len(CLASSES))
    return rows


def _changed_image(rows):
    rows = list(rows)
    rows[3] = (helpers.png_bytes(helpers.colour_image(CLASSES[rows[3][1]], seed=987)), rows[3][1])
    return rows


def _changed_caption(rows):
    rows = list(rows)
    image, caps = rows[4]
    rows[4] = (image, [*caps[:-1], caps[-1] + " again"])
    return rows


@pytest.mark.parametrize("layout", ["parquet", "webdataset", "imagefolder"])
@pytest.mark.parametrize("change", [_changed_label, _changed_image])
def test_different_classification_data_different_fingerprint(tmp_path, class_rows, layout, change):
    original = load_layout(tmp_path / "a", layout, class_rows, "zeroshot_classification")
    changed = load_layout(tmp_path / "b", layout, change(class_rows), "zeroshot_classification")
    assert len(changed) == len(original)
    assert changed.fingerprint != original.fingerprint


@pytest.mark.parametrize("layout", ["parquet", "webdataset"])
def test_different_caption_different_fingerprint(tmp_path, text_rows, layout):
    original = load_layout(tmp_path / "a", layout, text_rows, "retrieval")
    changed = load_layout(tmp_path / "b", layout, _changed_caption(text_rows), "retrieval")
    assert changed.fingerprint != original.fingerprint


@pytest.mark.parametrize("layout", ["parquet", "webdataset"])
def test_row_order_does_not_change_the_fingerprint(tmp_path, class_rows, text_rows, layout):
    for kind, rows in (("zeroshot_classification", class_rows), ("retrieval", text_rows)):
        shuffled = list(rows)
        random.Random(0).shuffle(shuffled)
        assert shuffled != list(rows)
        original = load_layout(tmp_path / kind / "a", layout, rows, kind)
        reordered = load_layout(tmp_path / kind / "b", layout, shuffled, kind)
        assert reordered.keys == original.keys  # same row names ...
        assert (reordered.labels or reordered.captions) != (original.labels or original.captions)  # ... other rows
        assert reordered.fingerprint == original.fingerprint


def test_content_fingerprint_is_a_pure_content_hash():
    hashes, labels = ["a" * 64, "b" * 64, "c" * 64], [0, 1, 1]
    base = content_fingerprint(hashes, labels)
    assert base == content_fingerprint(hashes[::-1], labels[::-1])
    assert base != content_fingerprint(hashes, [0, 1, 2])
    assert base != content_fingerprint(["a" * 64, "b" * 64, "d" * 64], labels)
    assert base != content_fingerprint(hashes[:2], labels[:2])
    caps = [["x", "y"], ["z"], ["é"]]
    assert content_fingerprint(hashes, caps) == content_fingerprint(hashes[::-1], caps[::-1])
    assert content_fingerprint(hashes, caps) != content_fingerprint(hashes, [["x", "y"], ["z"], ["e"]])
    # The rows are bound together: swapping labels between two images is a different dataset.
    assert base != content_fingerprint(hashes, [1, 0, 1])


# ----------------------------------------------------------------------------- 3. --data-dir and layout detection


def test_data_dir_reads_the_task_named_subfolder(tmp_path, class_rows):
    data_dir = tmp_path / "data"
    helpers.write_webdataset(data_dir / "mytask", "test", class_rows, kind="zeroshot_classification", classnames=CLASSES)
    task = make_task(tmp_path, "zeroshot_classification", name="mytask",
                     source={**HUB_SOURCE, "split": "test", "num_samples": len(class_rows)})
    data = load_task_data(task, data_dir=data_dir)
    assert data.layout == "webdataset"
    assert Path(data.location) == data_dir / "mytask"
    assert data.labels == [y for _, y in class_rows]


def test_data_dir_copy_wins_over_the_cards_path(tmp_path, class_rows):
    helpers.write_parquet(tmp_path / "card_copy", "test", class_rows, kind="zeroshot_classification", classnames=CLASSES)
    helpers.write_imagefolder(tmp_path / "data" / "t", "test", class_rows, classnames=CLASSES)
    task = local_task(tmp_path, tmp_path / "card_copy", "zeroshot_classification", len(class_rows))
    assert load_task_data(task, data_dir=tmp_path / "data").layout == "imagefolder"
    # Without a copy under --data-dir, a card with a local path still reads its own folder.
    assert load_task_data(task, data_dir=tmp_path / "elsewhere").layout == "parquet"


def test_relative_data_dir_with_imagefolder(tmp_path, class_rows, monkeypatch):
    """Guards a bug: imagefolder keys were computed relative to an unresolved folder and crashed on relative paths."""
    helpers.write_imagefolder(tmp_path / "data" / "t", "test", class_rows, classnames=CLASSES)
    task = make_task(tmp_path, "zeroshot_classification", source={**HUB_SOURCE, "split": "test", "num_samples": len(class_rows)})
    monkeypatch.chdir(tmp_path)
    data = load_task_data(task, data_dir="data")
    assert all(key.startswith("test/") for key in data.keys)


def test_hub_card_without_local_copy_says_download(tmp_path):
    (tmp_path / "data").mkdir()
    task = make_task(tmp_path, "zeroshot_classification", name="cifar10", source={**HUB_SOURCE, "split": "test", "num_samples": 10})
    with pytest.raises(UserError) as excinfo:
        load_task_data(task, data_dir=tmp_path / "data")
    assert_one_line_user_error(excinfo, "download", "cifar10", str(tmp_path / "data" / "cifar10"))


def test_detect_layouts_finds_each_layout(tmp_path, class_rows):
    for layout in ("arrow", "webdataset", "parquet", "imagefolder"):
        write_layout(layout, tmp_path / layout, class_rows[:4], "zeroshot_classification")
        assert detect_layouts(tmp_path / layout) == [layout]
    write_layout("parquet-config", tmp_path / "config", class_rows[:4], "zeroshot_classification")
    assert detect_layouts(tmp_path / "config") == ["parquet"]
    (tmp_path / "empty").mkdir()
    assert detect_layouts(tmp_path / "empty") == []
    assert set(LAYOUTS) == {"arrow", "webdataset", "parquet", "imagefolder"}


def test_folder_with_two_layouts_is_refused(tmp_path, class_rows):
    data_dir = tmp_path / "data"
    helpers.write_webdataset(data_dir / "t", "test", class_rows, kind="zeroshot_classification", classnames=CLASSES)
    helpers.write_parquet(data_dir / "t", "test", class_rows, kind="zeroshot_classification", classnames=CLASSES)
    assert detect_layouts(data_dir / "t") == ["webdataset", "parquet"]
    task = make_task(tmp_path, "zeroshot_classification", source={**HUB_SOURCE, "split": "test", "num_samples": len(class_rows)})
    with pytest.raises(UserError) as excinfo:
        load_task_data(task, data_dir=data_dir)
    assert_one_line_user_error(excinfo, "webdataset", "parquet", "several")


def test_folder_with_no_layout_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "t").mkdir(parents=True)
    (data_dir / "t" / "README.md").write_text("nothing here\n")
    task = make_task(tmp_path, "zeroshot_classification", source={**HUB_SOURCE, "split": "test", "num_samples": 3})
    with pytest.raises(UserError) as excinfo:
        load_task_data(task, data_dir=data_dir)
    assert_one_line_user_error(excinfo, "matches none", *LAYOUTS)


def test_clip_benchmark_classnames_with_another_count_are_refused(tmp_path, class_rows):
    folder = tmp_path / "t"
    helpers.write_webdataset(folder, "test", class_rows, kind="zeroshot_classification", classnames=CLASSES[:5])
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows)))
    assert_one_line_user_error(excinfo, "classnames.txt", "5", "6")


def test_clip_benchmark_classnames_worded_differently_give_a_note(tmp_path, class_rows):
    folder = tmp_path / "t"
    theirs = ("red", "green", "blue", "yellow", "black colour", "white colour")
    helpers.write_webdataset(folder, "test", class_rows, kind="zeroshot_classification", classnames=theirs)
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows))
    progress = RecordingProgress()
    data = load_task_data(task, progress=progress)
    assert len(progress.notes) == 1 and "card" in progress.notes[0] and "\n" not in progress.notes[0]
    assert task.classnames == CLASSES  # the card's names are the ones used for prompts
    assert data.labels == [y for _, y in class_rows]
    assert [(total, sum(steps)) for _, total, steps in progress.bars] == [(len(class_rows), len(class_rows))]


def test_clip_benchmark_classnames_identical_give_no_note(tmp_path, class_rows):
    folder = tmp_path / "t"
    helpers.write_webdataset(folder, "test", class_rows, kind="zeroshot_classification", classnames=CLASSES)
    progress = RecordingProgress()
    load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows)), progress=progress)
    assert progress.notes == []


# ----------------------------------------------------------------------------- 4. errors


@pytest.mark.parametrize("layout", ["parquet", "parquet-config", "arrow", "webdataset", "imagefolder"])
def test_missing_split_lists_the_splits_present(tmp_path, class_rows, layout):
    folder = tmp_path / "t"
    extra = write_layout(layout, folder, class_rows, "zeroshot_classification")
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), split="validation", **extra)
    with pytest.raises(UserError) as excinfo:
        load_task_data(task)
    assert_one_line_user_error(excinfo, "validation", "test")


def test_imagefolder_without_split_folders_loads(tmp_path, class_rows):
    """`<class>/<image>` with no split folder: the folder itself is the split."""
    folder = tmp_path / "t"
    for i, (image, label) in enumerate(class_rows):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        (folder / CLASSES[label] / f"{i:05d}.png").write_bytes(image)
    data = load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows)))
    assert sorted(data.keys) == sorted(f"{CLASSES[y]}/{i:05d}" for i, (_, y) in enumerate(class_rows))
    assert data.fingerprint == load_layout(tmp_path, "parquet", class_rows, "zeroshot_classification").fingerprint


@pytest.mark.parametrize("column,card_field", [("image", "image_column"), ("label", "label_column")])
def test_missing_column_names_it_and_lists_the_others(tmp_path, class_rows, column, card_field):
    folder = tmp_path / "t"
    extra = write_layout("parquet-cifar100", folder, class_rows, "zeroshot_classification")
    extra[card_field] = column  # the card asks for a column the cifar100-style copy does not have
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), **extra))
    assert_one_line_user_error(excinfo, f"'{column}'", "img", "fine_label")


def test_missing_caption_column(tmp_path, text_rows):
    folder = tmp_path / "t"
    helpers.write_parquet(folder, "test", text_rows, kind="retrieval")
    task = local_task(tmp_path, folder, "retrieval", len(text_rows), caption_column="sentences")
    with pytest.raises(UserError) as excinfo:
        load_task_data(task)
    assert_one_line_user_error(excinfo, "'sentences'", "captions", "image")


def test_missing_key_column(tmp_path, class_rows):
    folder = tmp_path / "t"
    helpers.write_parquet(folder, "test", class_rows, kind="zeroshot_classification", classnames=CLASSES)
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), key_column="image_id"))
    assert_one_line_user_error(excinfo, "'image_id'", "label")


@pytest.mark.parametrize("layout", ["parquet", "webdataset", "imagefolder"])
def test_num_samples_mismatch(tmp_path, class_rows, layout):
    folder = tmp_path / "t"
    extra = write_layout(layout, folder, class_rows, "zeroshot_classification")
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows) + 1, **extra)
    with pytest.raises(UserError) as excinfo:
        load_task_data(task)
    assert_one_line_user_error(excinfo, str(len(class_rows)), str(len(class_rows) + 1), "num_samples")


def test_empty_arrow_dataset(tmp_path, class_rows):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    full = datasets.Dataset.from_dict({"image": image_column(class_rows), "label": [y for _, y in class_rows]}, features=features)
    folder = tmp_path / "t"
    # One explicit shard: with the default 0 shards, `datasets` 5.2 cannot load its own empty copy back (IndexError).
    datasets.DatasetDict({"test": full.select([])}).save_to_disk(str(folder), num_shards={"test": 1})
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", 1))
    assert_one_line_user_error(excinfo, "empty")


def test_empty_parquet_file(tmp_path):
    """Guards a bug: `datasets` raised a bare ValueError ("corresponds to no data") for an empty parquet split."""
    folder = tmp_path / "t"
    helpers.write_parquet(folder, "test", [], kind="zeroshot_classification", classnames=CLASSES)
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", 1))
    assert_one_line_user_error(excinfo, "empty", "test")


def test_empty_webdataset_shard(tmp_path):
    """Guards a bug: an empty tar shard raised pyarrow's ArrowInvalid instead of a UserError."""
    folder = tmp_path / "t"
    (folder / "test").mkdir(parents=True)
    tarfile.open(folder / "test" / "0.tar", "w").close()
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", 1))
    assert_one_line_user_error(excinfo, "empty", "test")


@pytest.mark.parametrize("bad", [-1, 6])
def test_label_out_of_range(tmp_path, class_rows, bad):
    import datasets

    rows = list(class_rows)
    rows[2] = (rows[2][0], bad)
    folder = tmp_path / "t"
    # ClassLabel stores -1 for "no label"; a seventh class name lets 6 in.
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=[*CLASSES, "extra"])})
    write_parquet_table(folder / "test-00000-of-00001.parquet",
                        {"image": image_column(rows), "label": [y for _, y in rows]}, features=features)
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(rows)))
    assert_one_line_user_error(excinfo, "'2'", str(bad), "6 classes")


def test_webdataset_label_out_of_range(tmp_path, class_rows):
    rows = list(class_rows)
    rows[9] = (rows[9][0], 17)
    folder = tmp_path / "t"
    helpers.write_webdataset(folder, "test", rows, kind="zeroshot_classification", classnames=CLASSES)
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(rows)))
    assert_one_line_user_error(excinfo, "s0000009", "17")


@pytest.mark.parametrize("values", [["red", "green"], [0.0, 1.0]], ids=["text", "float"])
def test_non_integer_label(tmp_path, class_rows, values):
    rows = class_rows[:2]
    folder = tmp_path / "t"
    write_parquet_table(folder / "test-00000-of-00001.parquet", {"image": image_column(rows), "label": values},
                        features=None)
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", 2))
    assert_one_line_user_error(excinfo, "not an integer", repr(values[0]))


def test_caption_column_that_is_not_text(tmp_path, text_rows):
    import datasets

    rows = text_rows[:3]
    folder = tmp_path / "t"
    write_parquet_table(folder / "test-00000-of-00001.parquet", {"image": image_column(rows), "caption": [1, 2, 3]},
                        features=_image_features(datasets.Value("int64")))
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "retrieval", 3, caption_column="caption"))
    assert_one_line_user_error(excinfo, "int", "not text")


def test_row_without_a_caption(tmp_path, text_rows):
    rows = list(text_rows[:4])
    rows[2] = (rows[2][0], [])
    folder = tmp_path / "t"
    helpers.write_parquet(folder, "test", rows, kind="retrieval")
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "retrieval", 4))
    assert_one_line_user_error(excinfo, "'2'", "no caption")


def test_webdataset_row_without_a_caption(tmp_path, text_rows):
    rows = list(text_rows[:4])
    rows[1] = (rows[1][0], [])
    folder = tmp_path / "t"
    helpers.write_webdataset(folder, "test", rows, kind="retrieval")
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "retrieval", 4))
    assert_one_line_user_error(excinfo, "s0000001", "no caption")


@pytest.mark.parametrize("layout", ["parquet", "webdataset"])
def test_blank_captions_are_kept_and_counted(tmp_path, text_rows, layout):
    """As CLIP_benchmark keeps them: a blank caption is a query like any other (issue #13 item 8)."""
    rows = list(text_rows[:4])
    rows[1] = (rows[1][0], ["", "   ", "a red cat"])
    folder = tmp_path / "t"
    (helpers.write_parquet if layout == "parquet" else helpers.write_webdataset)(folder, "test", rows, kind="retrieval")
    data = load_task_data(local_task(tmp_path, folder, "retrieval", 4))
    assert data.captions[1] == ["", "   ", "a red cat"] and data.blank_captions == 2


def test_non_positive_limit(tmp_path, class_rows):
    with pytest.raises(UserError):
        load_layout(tmp_path, "parquet", class_rows, "zeroshot_classification", limit=0)


# ----------------------------------------------------------------------------- 5. limit


@pytest.mark.parametrize("layout", CLASSIFICATION_LAYOUTS)
def test_limit_keeps_the_first_rows_in_source_order(tmp_path, class_rows, layout):
    full = load_layout(tmp_path / "full", layout, class_rows, "zeroshot_classification")
    part = load_layout(tmp_path / "part", layout, class_rows, "zeroshot_classification", limit=7)
    assert len(part) == 7
    assert part.keys == full.keys[:7]
    assert part.labels == full.labels[:7]
    assert part.image_hashes() == full.image_hashes()[:7]
    assert part.fingerprint != full.fingerprint
    if layout != "imagefolder":  # the other layouts keep the order the rows were written in
        assert part.labels == [y for _, y in class_rows[:7]]
    everything = load_layout(tmp_path / "all", layout, class_rows, "zeroshot_classification", limit=1000)
    assert everything.keys == full.keys and everything.fingerprint == full.fingerprint


@pytest.mark.parametrize("layout", RETRIEVAL_LAYOUTS)
def test_limit_on_retrieval_keeps_images_with_all_their_captions(tmp_path, text_rows, layout):
    full = load_layout(tmp_path / "full", layout, text_rows, "retrieval")
    part = load_layout(tmp_path / "part", layout, text_rows, "retrieval", limit=5)
    assert len(part) == 5 and part.keys == full.keys[:5]
    assert part.captions == full.captions[:5] == [caps for _, caps in text_rows[:5]]
    assert sum(map(len, part.captions)) == sum(len(caps) for _, caps in text_rows[:5])


def test_limit_follows_shard_numbers_past_ten(tmp_path, class_rows):
    """Guards a bug: shards 0.tar ... 11.tar were read in string order (0, 1, 10, 11, 2, ...)."""
    rows = class_rows + helpers.classification_rows(4, CLASSES, seed=77)
    folder = tmp_path / "t"
    helpers.write_webdataset(folder, "test", rows, kind="zeroshot_classification", classnames=CLASSES, shard_size=2)
    assert len(list((folder / "test").glob("*.tar"))) == 12
    task = local_task(tmp_path, folder, "zeroshot_classification", len(rows))
    full = load_task_data(task)
    assert full.keys == [f"s{i:07d}" for i in range(len(rows))]
    assert full.labels == [y for _, y in rows]
    part = load_task_data(task, limit=5)
    assert part.keys == [f"s{i:07d}" for i in range(5)]


# ----------------------------------------------------------------------------- 6. keys


def test_webdataset_keys_are_tar_keys(tmp_path, class_rows):
    data = load_layout(tmp_path, "webdataset", class_rows, "zeroshot_classification")
    assert data.keys == [f"s{i:07d}" for i in range(len(class_rows))]


def test_imagefolder_keys_are_relative_paths_without_suffix(tmp_path, class_rows):
    data = load_layout(tmp_path, "imagefolder", class_rows, "zeroshot_classification")
    expected = {f"test/{CLASSES[y]}/{i:05d}": y for i, (_, y) in enumerate(class_rows)}
    assert sorted(data.keys) == sorted(expected)
    assert dict(zip(data.keys, data.labels)) == expected


@pytest.mark.parametrize("layout", ["parquet", "parquet-config", "arrow"])
def test_table_keys_are_row_numbers(tmp_path, class_rows, layout):
    data = load_layout(tmp_path, layout, class_rows, "zeroshot_classification")
    assert data.keys == [str(i) for i in range(len(class_rows))]


def test_key_column_names_the_rows(tmp_path, class_rows):
    import datasets

    ids = [f"img_{i * 7:04d}" for i in range(len(class_rows))]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES)),
                                  "image_id": datasets.Value("string")})
    folder = tmp_path / "t"
    write_parquet_table(folder / "test-00000-of-00001.parquet",
                        {"image": image_column(class_rows), "label": [y for _, y in class_rows], "image_id": ids},
                        features=features)
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), key_column="image_id")
    assert load_task_data(task).keys == ids
    assert load_task_data(task, limit=3).keys == ids[:3]


# ----------------------------------------------------------------------------- 7. imagefolder label mapping


def _imagefolder(tmp_path, rows, folder_names, card_names):
    folder = tmp_path / "t"
    helpers.write_imagefolder(folder, "test", rows, classnames=folder_names)
    data = load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(rows), classnames=card_names))
    by_key = dict(zip(data.keys, data.labels))
    return data, {f"test/{folder_names[y]}/{i:05d}": y for i, (_, y) in enumerate(rows)}, by_key


def test_imagefolder_maps_a_subset_of_class_folders_by_name(tmp_path):
    card = tuple(f"class {chr(ord('a') + i)}" for i in range(12))
    rows = [(helpers.png_bytes(helpers.colour_image(CLASSES[i % 6], seed=i)), label)
            for i, label in enumerate([1, 5, 10, 1, 10, 5, 10])]
    data, expected, by_key = _imagefolder(tmp_path, rows, card, card)
    assert by_key == expected
    assert sorted(set(data.labels)) == [1, 5, 10]  # not renumbered 0, 1, 2


def test_imagefolder_integer_folders_map_to_their_integer(tmp_path):
    """ImageNet-V2 style: folders 0 ... 11; sorted as strings '10' < '2', which must not matter."""
    card = tuple(f"class {chr(ord('a') + i)}" for i in range(12))
    rows = [(helpers.png_bytes(helpers.colour_image(CLASSES[i % 6], seed=i)), i % 12) for i in range(24)]
    folders = [str(i) for i in range(12)]
    data, expected, by_key = _imagefolder(tmp_path, rows, folders, card)
    assert by_key == expected
    assert by_key["test/10/00010"] == 10 and by_key["test/2/00002"] == 2


def test_imagefolder_integer_folders_subset(tmp_path):
    card = tuple(f"class {chr(ord('a') + i)}" for i in range(12))
    rows = [(helpers.png_bytes(helpers.colour_image(CLASSES[i % 6], seed=i)), y) for i, y in enumerate([2, 10, 11, 2, 10])]
    _, expected, by_key = _imagefolder(tmp_path, rows, [str(i) for i in range(12)], card)
    assert by_key == expected


def test_imagefolder_class_folders_named_like_splits(tmp_path):
    """Guards a bug: `datasets` took class folders such as 'train' (VOC) or 'bullet train' (ImageNet) for splits."""
    card = ("train", "bullet train", "test", "validation", "dev", "car")
    rows = [(helpers.png_bytes(helpers.colour_image(CLASSES[i % 6], seed=i)), i % 6) for i in range(12)]
    data, expected, by_key = _imagefolder(tmp_path, rows, card, card)
    assert len(data) == 12
    assert by_key == expected


def test_imagefolder_folders_in_sorted_order_only_when_the_card_says_so(tmp_path, class_rows):
    folder = tmp_path / "t"
    helpers.write_imagefolder(folder, "test", class_rows, classnames=[f"n{i:03d}" for i in range(6)])
    with pytest.raises(UserError) as excinfo:  # folders named neither like the classes nor with numbers
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), classnames=tuple("abcdef")))
    assert_one_line_user_error(excinfo, "'n000'", "class_folders")
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), classnames=tuple("abcdefg"), class_folders="sorted")
    with pytest.raises(UserError) as excinfo:
        load_task_data(task)
    assert_one_line_user_error(excinfo, "6 folders", "7 classes")
    # With class_folders = "sorted", folders are taken in sorted order (torchvision's ImageFolder convention).
    task = local_task(tmp_path, folder, "zeroshot_classification", len(class_rows), classnames=tuple("abcdef"), class_folders="sorted")
    data = load_task_data(task)
    assert dict(zip(data.keys, data.labels)) == {f"test/n{y:03d}/{i:05d}": y for i, (_, y) in enumerate(class_rows)}


def test_one_misnamed_class_folder_is_an_error_not_a_reordering(tmp_path):
    """Issue #13 item 4: one folder matching no class ('hearts' for 'heart') made the loader take every folder
    in sorted order: acc1 0.2% instead of 94.6%, exit 0."""
    card = ("spade", "heart", "club", "diamond", "star", "moon")
    folders = ["spade", "hearts", "club", "diamond", "star", "moon"]
    rows = [(helpers.png_bytes(helpers.colour_image(CLASSES[i % 6], seed=i)), i % 6) for i in range(12)]
    folder = tmp_path / "t"
    helpers.write_imagefolder(folder, "test", rows, classnames=folders)
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(rows), classnames=card))
    assert_one_line_user_error(excinfo, "'hearts'", "did you mean 'heart'?")


def test_a_folder_named_after_a_shared_class_name_is_ambiguous(tmp_path):
    card = ("sunglasses", "cat", "sunglasses")
    rows = [(helpers.png_bytes(helpers.colour_image(CLASSES[i % 2], seed=i)), i % 2) for i in range(4)]
    folder = tmp_path / "t"
    helpers.write_imagefolder(folder, "test", rows, classnames=["sunglasses", "cat"])
    with pytest.raises(UserError) as excinfo:
        load_task_data(local_task(tmp_path, folder, "zeroshot_classification", len(rows), classnames=card))
    assert_one_line_user_error(excinfo, "'sunglasses'", "several classes", "class_folders")


# ----------------------------------------------------------------------------- 8. decode_image


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"),
                                      ("LA", "PNG"), ("1", "PNG"), ("RGB", "WEBP"), ("RGB", "JPEG")])
def test_decode_image_gives_rgb(mode, fmt):
    source = helpers.colour_image("green", seed=3).convert(mode)
    image = decode_image(helpers.encode(source, fmt))
    assert image.mode == "RGB" and image.size == (32, 32)
    if mode in ("RGB", "RGBA", "P", "CMYK"):
        assert np.abs(np.asarray(image, dtype=int).mean(axis=(0, 1)) - helpers.COLOURS["green"]).max() < 30


def test_decode_16_bit_grayscale_matches_its_8_bit_twin():
    """Guards the trap in shared/TRAPS.md: convert("RGB") turns a 16-bit PNG nearly white."""
    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, size=(32, 32), dtype=np.uint16)
    array[0, :] = np.arange(32, dtype=np.uint16) * 2048  # a ramp, including dark values
    wide = Image.fromarray(array)
    assert wide.mode == "I;16"
    blob = helpers.encode(wide, "PNG")
    assert Image.open(io.BytesIO(blob)).mode.startswith("I")
    decoded = np.asarray(decode_image(blob), dtype=int)
    twin = np.asarray(decode_image(helpers.encode(Image.fromarray((array >> 8).astype(np.uint8)), "PNG")), dtype=int)
    assert decoded.shape == twin.shape == (32, 32, 3)
    assert np.abs(decoded - twin).max() <= 1
    assert abs(decoded.mean() - twin.mean()) < 1 and decoded.mean() < 200  # not nearly white


@pytest.mark.parametrize("blob", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
                         ids=["empty", "garbage", "bad-png"])
def test_decode_corrupt_bytes_raises(blob):
    with pytest.raises(OSError):  # Pillow's UnidentifiedImageError is one
        decode_image(blob)


def test_decode_truncated_png_raises():
    blob = helpers.png_bytes(helpers.colour_image("red", seed=1))
    with pytest.raises(OSError, match="truncated"):
        decode_image(blob[: len(blob) // 2])


# ----------------------------------------------------------------------------- 9. decode_image_array (the workers' fast path)


def _photo(mode: str = "RGB", size=(75, 53)) -> Image.Image:
    """Smooth noise, so JPEG's chroma subsampling and upsampling have real work to do."""
    small = Image.fromarray(np.random.default_rng(7).integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return small.resize(size, Image.BICUBIC).convert(mode)


JPEGS = {
    "4:2:0": ("RGB", {"subsampling": 2}), "4:2:2": ("RGB", {"subsampling": 1}), "4:4:4": ("RGB", {"subsampling": 0}),
    "progressive": ("RGB", {"progressive": True}), "grey": ("L", {}), "cmyk": ("CMYK", {}), "q20": ("RGB", {"quality": 20}),
}


def test_torchvision_decodes_jpegs_exactly_like_pillow_here():
    """The fast path is on in this environment (else the tests below would not exercise it)."""
    from vtde_bench.imaging import _torchvision_jpeg_is_exact

    assert _torchvision_jpeg_is_exact()


@pytest.mark.parametrize("name", sorted(JPEGS))
def test_decode_image_array_has_pillows_pixels_for_jpegs(name):
    from vtde_bench.imaging import decode_image_array

    mode, options = JPEGS[name]
    blob = helpers.encode(_photo(mode, size=(75 + len(name), 53)), "JPEG", **options)
    array = decode_image_array(blob)
    assert array.dtype.is_floating_point is False and array.shape == (53, 75 + len(name), 3)
    assert np.array_equal(array.numpy(), np.asarray(decode_image(blob)))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_decode_image_array_has_pillows_pixels_for_other_formats(fmt):
    from vtde_bench.imaging import decode_image_array

    blob = helpers.encode(_photo("RGBA" if fmt == "PNG" else "RGB"), fmt)
    assert np.array_equal(decode_image_array(blob).numpy(), np.asarray(decode_image(blob)))


def test_decode_image_array_scales_16_bit_images_like_decode_image():
    from vtde_bench.imaging import decode_image_array

    blob = helpers.encode(Image.fromarray(np.random.default_rng(1).integers(0, 65536, (16, 16), dtype=np.uint16)), "PNG")
    assert np.array_equal(decode_image_array(blob).numpy(), np.asarray(decode_image(blob)))


def test_decode_image_array_reports_a_truncated_jpeg_in_pillows_words():
    from vtde_bench.imaging import decode_image_array

    blob = helpers.encode(_photo(), "JPEG")[:-40]
    with pytest.raises(OSError, match="truncated"):
        decode_image(blob)
    with pytest.raises(OSError, match="truncated"):
        decode_image_array(blob)


# ----------------------------------------------------------------------------- 10. image hashes kept in the cache


def _parquet_task(tmp_path, rows, name="t"):
    folder = tmp_path / "data" / name
    write_layout("parquet", folder, rows, "zeroshot_classification")
    return folder, local_task(tmp_path / "cards-" / name, folder, "zeroshot_classification", len(rows))


def _count_image_reads(monkeypatch) -> list[int]:
    from vtde_bench.data import TaskData

    reads = [0]
    original = TaskData._iter_image_values

    def counting(self, *args, **kwargs):
        for value in original(self, *args, **kwargs):
            reads[0] += 1
            yield value

    monkeypatch.setattr(TaskData, "_iter_image_values", counting)
    return reads


def test_warm_load_reads_no_image_bytes_and_gets_the_same_fingerprint(tmp_path, class_rows, monkeypatch):
    from vtde_bench.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    _, task = _parquet_task(tmp_path, class_rows)
    reads = _count_image_reads(monkeypatch)
    cold = load_task_data(task, cache=cache)
    assert reads[0] == len(class_rows)
    warm = load_task_data(task, cache=cache)
    assert reads[0] == len(class_rows)  # not one image read again
    uncached = load_task_data(task)
    assert reads[0] == 2 * len(class_rows)
    assert cold.fingerprint == warm.fingerprint == uncached.fingerprint
    assert cold.order_fingerprint == warm.order_fingerprint == uncached.order_fingerprint
    assert cache.info()["image_hash_sets"] == 1
    limited = load_task_data(task, cache=cache, limit=5)  # other rows: another entry
    assert reads[0] == 2 * len(class_rows) + 5 and cache.info()["image_hash_sets"] == 2
    assert limited.order_fingerprint == load_task_data(task, limit=5).order_fingerprint


def test_changed_images_are_hashed_again(tmp_path, class_rows):
    from vtde_bench.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    folder, task = _parquet_task(tmp_path, class_rows)
    before = load_task_data(task, cache=cache).fingerprint
    changed = [(helpers.encode(_photo(), "PNG"), class_rows[0][1])] + list(class_rows[1:])
    import shutil

    shutil.rmtree(folder)
    write_layout("parquet", folder, changed, "zeroshot_classification")
    after = load_task_data(task, cache=cache)
    assert after.fingerprint != before
    assert after.fingerprint == load_task_data(task).fingerprint


def test_a_damaged_hash_file_is_recomputed(tmp_path, class_rows, monkeypatch):
    from vtde_bench.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    _, task = _parquet_task(tmp_path, class_rows)
    expected = load_task_data(task, cache=cache).fingerprint
    [stored] = (tmp_path / "cache").rglob("image-hashes.json")
    stored.write_text(stored.read_text().replace('"', "'", 2))
    reads = _count_image_reads(monkeypatch)
    assert load_task_data(task, cache=cache).fingerprint == expected
    assert reads[0] == len(class_rows)


def test_imagefolder_hashes_are_never_cached(tmp_path, class_rows):
    """Its images live in files outside the arrow cache, so the arrow files' identity says nothing about them."""
    from vtde_bench.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    folder = tmp_path / "if" / "t"
    write_layout("imagefolder", folder, class_rows, "zeroshot_classification")
    task = local_task(tmp_path / "if", folder, "zeroshot_classification", len(class_rows))
    load_task_data(task, cache=cache)
    assert cache.info()["image_hash_sets"] == 0


def test_imagefolder_class_numbers_outside_the_card_are_a_user_error_at_load(tmp_path, class_rows):
    """Numbered class folders (ImageNet-V2 style) get the same range check as every other layout's labels."""
    folder = tmp_path / "if" / "t"
    write_layout("imagefolder", folder, class_rows, "zeroshot_classification", classnames=[str(i) for i in range(len(CLASSES))])
    task = local_task(tmp_path / "if", folder, "zeroshot_classification", len(class_rows), classnames=CLASSES[:4])
    with pytest.raises(UserError) as excinfo:
        load_task_data(task)
    assert_one_line_user_error(excinfo, "outside the card's 4 classes")
