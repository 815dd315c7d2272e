"""The standard suite: its data files are pinned, and every card runs on fixture copies of each layout it accepts.

Fixtures replicate each real source's schema: uoft-cs/cifar10 (`plain_text/`, `img`,
`label`), uoft-cs/cifar100 (`cifar100/`, `img`, `fine_label`, `coarse_label`, the
dataset's own quirky label names), and the CLIP_benchmark webdataset repos (webp in
the vtab CIFAR repos, jpg elsewhere; `.cls` labels; `.txt` captions one per line).
Only the cards' sizes (and ImageNet's number of templates) are replaced, to fit the fixtures.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from PIL import Image

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench.cli import main
from vtde_bench.tasks import load_tasks, tasks_dir

TASKS = tasks_dir()

# Line counts (comments excluded) and sha256 of the shipped protocol files: a change to any of
# them changes published numbers, so it must be deliberate (update here and bump card versions).
PINNED = {
    "classnames/cifar10.txt": (10, "dac461ac7db44775b5ee41849994c27738341f040309e8c1dc75b746b06adb78"),
    "classnames/cifar100.txt": (100, "99a3db382af0575de14793aa351619d3c0ef75a8c808869893152b02b80539bf"),
    "classnames/imagenet1k.txt": (1000, "25f897c6649cd077e392576c3ab4381eb5eb5fb46a279ca842d1a723b379ced4"),
    "templates/cifar.txt": (18, "93f57eab65734e25bbd4e6f9ef58d8278efa511675a4e123a33afe464dc839be"),
    "templates/imagenet.txt": (80, "89f1507d675b2233000cf0941cb4fc04341bec004b1de3b55d70de2f0bb9525d"),
    "data/imagenet1k_wnids.txt": (1000, "67677e84bc2e3150f6f8af409b9dc31820b3495a61853295a87ad0ff3884a239"),
    "data/imagenet_r_indices.txt": (200, "0887642e31ebfa8a486bfc51515a51766dca5f8d37cdeef6e35efb00e201149c"),
    "data/imagenet_a_indices.txt": (200, "946ad0bc6ee8887b8af5eab3cf06a5d1720a94d24c1dabaface219d3f3e0cd96"),
}


def content_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("relative", sorted(PINNED))
def test_protocol_files_are_pinned(relative):
    path = TASKS / relative
    count, sha256 = PINNED[relative]
    assert len(content_lines(path)) == count
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def test_known_entries():
    cifar100 = content_lines(TASKS / "classnames/cifar100.txt")
    assert cifar100[1] == "aquarium fish" and cifar100[26] == "crab" and "_" not in "".join(cifar100)
    imagenet = content_lines(TASKS / "classnames/imagenet1k.txt")
    assert (imagenet[0], imagenet[1], imagenet[999]) == ("tench", "goldfish", "toilet paper")
    wnids = content_lines(TASKS / "data/imagenet1k_wnids.txt")
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141" and wnids == sorted(set(wnids))
    for name in ("cifar.txt", "imagenet.txt"):
        assert all(t.count("{c}") == 1 for t in content_lines(TASKS / "templates" / name))


def test_registry_lists_the_standard_group(capsys):
    assert main(["tasks"]) == 0
    shown = capsys.readouterr().out
    for name, size in (("cifar10", "10,000"), ("cifar100", "10,000"), ("imagenet1k", "50,000"), ("flickr30k", "1,000"), ("mscoco", "5,000")):
        assert name in shown and size in shown
    assert "standard: cifar10, cifar100, imagenet1k, flickr30k, mscoco" in shown
    assert [t.name for t in load_tasks("standard")] == ["cifar10", "cifar100", "imagenet1k", "flickr30k", "mscoco"]


# ----------------------------------------------------------------------------- fixtures in the real schemas


def encoded(image: Image.Image, ext: str) -> bytes:
    """Bytes for a file with extension `ext` (lossless webp, as in the vtab CIFAR repos)."""
    return helpers.encode(image, {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}[ext], **({"lossless": True} if ext == "webp" else {}))


def class_rows(n: int, num_classes: int, fmt: str) -> list[tuple[bytes, int]]:
    colours = list(helpers.COLOURS)
    return [(encoded(helpers.colour_image(colours[i % 6], seed=i), fmt), (i * 7) % num_classes) for i in range(n)]


def caption_rows(n: int, fmt: str) -> list[tuple[bytes, list[str]]]:
    return [(encoded(helpers.colour_image(list(helpers.COLOURS)[i % 6], seed=100 + i), fmt), caps)
            for i, (_, caps) in enumerate(helpers.retrieval_rows(n, seed=3))]


def write_cifar100_parquet(folder: Path, rows) -> None:
    """uoft-cs/cifar100's schema: img, fine_label and coarse_label, with the dataset's own label names."""
    import datasets

    fine = [name.replace(" ", "_") for name in content_lines(TASKS / "classnames/cifar100.txt")]
    fine[26] = "cra"  # the real dataset's truncated name; prompts never use these
    features = datasets.Features({
        "img": datasets.Image(),
        "fine_label": datasets.ClassLabel(names=fine),
        "coarse_label": datasets.ClassLabel(names=[f"coarse_{i}" for i in range(20)]),
    })
    ds = datasets.Dataset.from_dict(
        {"img": [{"bytes": b, "path": None} for b, _ in rows], "fine_label": [y for _, y in rows], "coarse_label": [y % 20 for _, y in rows]},
        features=features,
    )
    (folder / "cifar100").mkdir(parents=True)
    ds.to_parquet(str(folder / "cifar100" / "test-00000-of-00001.parquet"))


def write_layout(layout: str, task, folder: Path, rows) -> None:
    classnames = getattr(task, "classnames", ())
    kind = task.type
    if layout == "hub-parquet" and task.name == "cifar100":
        write_cifar100_parquet(folder, rows)
    elif layout == "hub-parquet":
        helpers.write_parquet(folder, "test", rows, kind=kind, classnames=classnames, image_column="img", config="plain_text")
    elif layout == "webdataset":
        ext = "webp" if task.name.startswith("cifar") else "jpg"
        helpers.write_webdataset(folder, "test", rows, kind=kind, classnames=classnames, ext=ext)
    elif layout == "imagefolder":
        names = task.source.class_folders or classnames
        helpers.write_imagefolder(folder, "test", rows, classnames=names)
    else:
        raise AssertionError(layout)


LAYOUTS = {
    "cifar10": ("hub-parquet", "webdataset", "imagefolder"),
    "cifar100": ("hub-parquet", "webdataset", "imagefolder"),
    "imagenet1k": ("webdataset", "imagefolder"),
    "flickr30k": ("webdataset",),
    "mscoco": ("webdataset",),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_card_runs_end_to_end_on_every_layout(name, tmp_path, tiny_vtde):
    (task,) = load_tasks(name)
    fmt = "jpg" if name in ("imagenet1k", "flickr30k", "mscoco") else "png"
    if hasattr(task, "classnames"):
        rows = class_rows(14, len(task.classnames), fmt)
        # 1,000 classes x 80 templates is 80,000 prompts: two templates keep the test in seconds.
        small = dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=len(rows)), templates=task.templates[:2])
    else:
        rows = caption_rows(9, fmt)
        small = dataclasses.replace(task, source=dataclasses.replace(
            task.source, num_samples=len(rows), num_captions=sum(len(c) for _, c in rows)))
    outcomes = {}
    for layout in LAYOUTS[name]:
        data_dir = tmp_path / layout
        write_layout(layout, task, data_dir / name, rows)
        # Batch size 1: an image's embedding then cannot depend on which images share its batch (BLAS
        # kernels differ in the last bits with batch shape), so layouts with other row orders match exactly.
        options = RunOptions(output_dir=tmp_path / f"results-{layout}", data_dir=data_dir, workers=0, batch_size=1)
        outcomes[layout] = evaluate(str(tiny_vtde), [small], options=options)[name]
    first = outcomes[LAYOUTS[name][0]]
    assert first.dataset.num_images == len(rows)
    # Facts of the fixture itself (the only check for a task with one layout; the loop below compares layouts).
    if hasattr(task, "classnames"):
        assert first.dataset.num_texts == len(task.classnames) * 2 and len(first.per_class_recall) == len(task.classnames)
    else:
        assert first.dataset.num_texts == sum(len(c) for _, c in rows)
    assert set(first.metrics) == set(task.metrics)
    for layout, result in outcomes.items():
        assert result.dataset.fingerprint == first.dataset.fingerprint, layout
        assert result.metrics == first.metrics, layout
        assert result.dataset.hub == task.source.hub


def test_num_captions_is_checked(tmp_path, tiny_vtde):
    (task,) = load_tasks("mscoco")
    rows = caption_rows(5, "jpg")
    write_layout("webdataset", task, tmp_path / "mscoco", rows)
    small = dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=5, num_captions=999))
    assert main(["run", "--model", str(tiny_vtde), "--tasks", "mscoco", "--data-dir", str(tmp_path)]) == 2  # 5 ≠ 5,000 images
    from vtde_bench.errors import UserError

    with pytest.raises(UserError, match="captions but the card expects 999"):
        evaluate(str(tiny_vtde), [small], options=RunOptions(output_dir=None, data_dir=tmp_path, workers=0))


# ----------------------------------------------------------------------------- download


def mirror_repo_cifar10(mirror: Path) -> None:
    """A folder laid out like the uoft-cs/cifar10 hub repo, train split and README included."""
    repo = mirror / "uoft-cs" / "cifar10"
    (task,) = load_tasks("cifar10")
    helpers.write_parquet(repo, "test", class_rows(12, 10, "png"), kind="zeroshot_classification", classnames=task.classnames,
                          image_column="img", config="plain_text")
    helpers.write_parquet(repo, "train", class_rows(6, 10, "png"), kind="zeroshot_classification", classnames=task.classnames,
                          image_column="img", config="plain_text")
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: plain_text\n---\n")


def mirror_repo_flickr(mirror: Path) -> None:
    repo = mirror / "clip-benchmark" / "wds_flickr30k"
    helpers.write_webdataset(repo, "test", caption_rows(9, "jpg"), kind="retrieval", ext="jpg")
    helpers.write_webdataset(repo, "train", caption_rows(4, "jpg"), kind="retrieval", ext="jpg")


def test_download_then_run_offline(tmp_path, tiny_vtde, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror_repo_cifar10(mirror)
    mirror_repo_flickr(mirror)
    monkeypatch.setenv("VTDE_BENCH_HUB_MIRROR", str(mirror))
    data = tmp_path / "data"
    assert main(["download", "--tasks", "cifar10", "flickr30k", "--to", str(data)]) == 0
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()) == [
        "cifar10/.vtde-source.json",  # the repo, the card's revision and the commit the files are of
        "cifar10/plain_text/test-00000-of-00001.parquet",
        "flickr30k/.vtde-source.json",
        "flickr30k/dataset_type.txt",
        "flickr30k/test/0.tar",
        "flickr30k/test/1.tar",
        "flickr30k/test/nshards.txt",
    ]
    assert not [p for p in data.iterdir() if p.name.startswith(".")], "no staging folders left"
    for name, rows in (("cifar10", 12), ("flickr30k", 9)):
        (task,) = load_tasks(name)
        small = dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=rows, num_captions=None))
        result = evaluate(str(tiny_vtde), [small], options=RunOptions(output_dir=None, data_dir=data, workers=0))[name]
        assert result.dataset.num_images == rows and result.dataset.resolved_commit == task.source.revision


def test_download_of_a_local_task_is_a_user_error(tmp_path, capsys):
    assert main(["download", "--tasks", "shapes-classification", "--to", str(tmp_path)]) == 2
    assert "nothing to download" in capsys.readouterr().err
