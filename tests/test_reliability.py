"""Reliability (issue #7): bad input, unusual images, concurrent and damaged runs, a full disk, provenance.

Every bad input ends the same way: exit code 2, one line on stderr that names the problem
and the fix, no traceback, and no result file. The messages themselves are tested in
detail in test_tasks.py, test_data.py and test_models.py; here each case goes through
`vtde-bench run` once to hold the command to that contract. Security cases (remote code,
pickles, tar members, cards) are in test_security.py.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import helpers
from helpers import COLOUR_NAMES
from vtde_bench.cli import main

HUB = {"hub": "someone/colours", "revision": "0" * 40}


def run(*args: str) -> int:
    return main(["run", "--workers", "0", "--bootstrap", "0", *args])


def fresh(capsys) -> None:
    """Forget what the fixture writers printed (the libraries' progress bars), so only the command's output is checked."""
    capsys.readouterr()


def one_line_error(capsys, *fragments: str) -> str:
    """The one error line, stderr's last. (Before it, where stderr is not a terminal, the stages' log lines.)"""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def result_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".parquet")) if folder.exists() else []


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (`.NAME.XXXX.tmp`) left behind."""
    return sorted(p for p in folder.rglob("*.tmp")) if folder.exists() else []


# ----------------------------------------------------------------------------- 1. bad input: exit 2, one line, nothing written


def _siglip_with_unequal_widths(tiny_siglip: Path, folder: Path) -> Path:
    """A SigLIP whose text head projects to 24 while its vision tower gives 32: transformers builds and loads it."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_siglip, folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["projection_size"] = 24
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    weights["text_model.head.weight"] = torch.randn(24, 32, generator=torch.Generator().manual_seed(0))
    weights["text_model.head.bias"] = torch.zeros(24)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _model_case(case: str, tmp: Path, request) -> Path:
    if case == "a-file":
        (tmp / "weights.bin").write_bytes(b"x")
        return tmp / "weights.bin"
    if case == "no-config":
        shutil.copytree(request.getfixturevalue("tiny_vtde"), tmp / "m")
        (tmp / "m" / "config.json").unlink()
        return tmp / "m"
    if case == "text-only":
        from transformers import BertConfig, BertModel

        BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp / "m")
        return tmp / "m"
    if case == "vision-only":
        from transformers import ViTConfig, ViTImageProcessor, ViTModel

        ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64)).save_pretrained(tmp / "m")
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp / "m")
        return tmp / "m"
    if case == "unequal-widths":
        return _siglip_with_unequal_widths(request.getfixturevalue("tiny_siglip"), tmp / "m")
    if case == "missing-weights":  # transformers would fill the gap with random values, silently
        from safetensors.torch import load_file, save_file

        shutil.copytree(request.getfixturevalue("tiny_vtde"), tmp / "m")
        weights = load_file(tmp / "m" / "model.safetensors")
        del weights["visual_projection.weight"]
        save_file(weights, tmp / "m" / "model.safetensors", metadata={"format": "pt"})
        return tmp / "m"
    if case == "bad-weights":
        shutil.copytree(request.getfixturevalue("tiny_vtde"), tmp / "m")
        data = bytearray((tmp / "m" / "model.safetensors").read_bytes())
        (tmp / "m" / "model.safetensors").write_bytes(bytes(data[: len(data) // 3]))  # cut off mid-tensor
        return tmp / "m"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        ("a-file", "is a file; give the folder"),
        ("no-config", "has no config.json"),
        ("text-only", "BertModel, not a vision-text dual encoder"),
        ("vision-only", "ViTModel, not a vision-text dual encoder"),
        ("unequal-widths", "image embeddings have width 32 but text embeddings 24"),
        ("bad-weights", "weights failed to load"),
        ("missing-weights", "lacks 1 weight(s) the model needs (e.g. visual_projection.weight), which would be randomly initialised"),
    ],
)
def test_bad_model_exits_2_and_writes_nothing(case, message, request, tmp_path, colour_rows, capsys):
    """(A missing path is in test_cli.py.) Guards a bug: a checkpoint lacking a weight loaded with it randomly initialised."""
    card = helpers.colour_card(tmp_path, colour_rows)
    model = _model_case(case, tmp_path, request)
    out = tmp_path / "results"
    fresh(capsys)
    assert run("--model", str(model), "--tasks", str(card), "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")) == 2
    one_line_error(capsys, message)
    assert result_files(out) == [] and result_files(tmp_path / "cache") == []


def _card_case(case: str, folder: Path, rows) -> list[str]:
    """Arguments naming a bad task (card), written under `folder`."""
    if case == "unknown-name":
        return ["cifar-10"]
    card = helpers.colour_card(folder, rows)
    text = card.read_text()
    if case == "broken-toml":
        card.write_text(text.replace('version = 1', 'version = = 1'))
    elif case == "missing-field":
        card.write_text(text[: text.index("[source]")] + text[text.index("[prompts]"):])
    elif case == "unknown-key":
        card.write_text(text.replace("[source]\n", '[source]\nimage_colum = "image"\n'))
    elif case == "wrong-type":
        card.write_text(text.replace("version = 1", 'version = "1"'))
    elif case == "prompt-file-outside":
        (folder.parent / "secret.txt").write_text("red\n")
        card.write_text(text.replace('classnames = "colours_classnames.txt"', 'classnames = "../secret.txt"'))
    else:
        raise AssertionError(case)
    return [str(card)]


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("unknown-name", ["unknown task 'cifar-10'", "did you mean 'cifar10'"]),
        ("broken-toml", ["not valid TOML", "fix the syntax"]),
        ("missing-field", ["field 'source' is missing", "add a [source] table"]),  # '[source]' is text, not rich markup
        ("unknown-key", ["'source.image_colum'", "did you mean 'source.image_column'"]),
        ("wrong-type", ["'version' must be int", "str '1'"]),
        ("prompt-file-outside", ["'prompts.classnames'", "outside the card's folder"]),
    ],
)
def test_bad_task_card_exits_2_and_writes_nothing(case, fragments, tiny_vtde, tmp_path, colour_rows, capsys):
    tasks = _card_case(case, tmp_path / "cards", colour_rows)
    out = tmp_path / "results"
    fresh(capsys)
    assert run("--model", str(tiny_vtde), "--tasks", *tasks, "--output-dir", str(out)) == 2
    one_line_error(capsys, *fragments)
    assert result_files(out) == []


def _data_case(case: str, tmp: Path, rows, caption_rows) -> list[str]:
    """Arguments (--tasks ... and perhaps --data-dir) for a task whose data is bad."""
    import datasets

    if case == "classes-do-not-match-labels":  # the card names 3 classes, the data has labels up to 5
        card = helpers.colour_card(tmp, rows)
        (tmp / "colours_classnames.txt").write_text("\n".join(COLOUR_NAMES[:3]) + "\n")
        return [str(card)]
    if case == "label-out-of-range":
        rows = list(rows)
        rows[4] = (rows[4][0], -1)  # ClassLabel's "no label"
        return [str(helpers.colour_card(tmp, rows))]
    if case == "empty-dataset":
        helpers.write_parquet(tmp / "empty", "test", [], kind="zeroshot_classification", classnames=COLOUR_NAMES)
        return [str(helpers.write_card(tmp / "e.toml", name="e", kind="zeroshot_classification",
                                       source={"path": "empty", "split": "test", "num_samples": 1}, classnames=COLOUR_NAMES))]
    if case == "missing-split":
        return [str(helpers.colour_card(tmp, rows, split="validation"))]
    if case == "caption-not-text":
        features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("int64")})
        (tmp / "caps").mkdir()
        datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b, _ in caption_rows], "caption": list(range(len(caption_rows)))},
                                   features=features).to_parquet(str(tmp / "caps" / "test-00000-of-00001.parquet"))
        return [str(helpers.write_card(tmp / "c.toml", name="c", kind="retrieval",
                                       source={"path": "caps", "split": "test", "num_samples": len(caption_rows), "caption_column": "caption"}))]
    hub_card = helpers.write_card(tmp / "cards" / "colours.toml", name="colours", kind="zeroshot_classification",
                                  source={**HUB, "split": "test", "num_samples": len(rows)}, classnames=COLOUR_NAMES)
    copy = tmp / "local" / "colours"
    copy.mkdir(parents=True)
    if case == "data-dir-no-layout":
        (copy / "README.md").write_text("the images are somewhere else\n")
    elif case == "data-dir-two-layouts":
        helpers.write_parquet(copy, "test", rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
        helpers.write_imagefolder(copy, "test", rows, classnames=COLOUR_NAMES)
    else:
        raise AssertionError(case)
    return [str(hub_card), "--data-dir", str(tmp / "local")]


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("classes-do-not-match-labels", ["label of row", "outside the card's 3 classes", "check the class-name file"]),
        ("label-out-of-range", ["label of row '4' is -1", "outside the card's 6 classes"]),
        ("empty-dataset", ["split 'test'", "are they empty or damaged?"]),
        ("missing-split", ["split 'validation'", "found: test", "fix source.split"]),
        ("caption-not-text", ["is int, not text or a list of text", "source.caption_column"]),
        ("data-dir-no-layout", ["matches none of the supported layouts"]),
        ("data-dir-two-layouts", ["matches several (parquet, imagefolder)", "keep exactly one layout"]),
    ],
)
def test_bad_data_exits_2_and_writes_nothing(case, fragments, tiny_vtde, tmp_path, colour_rows, caption_rows, capsys):
    args = _data_case(case, tmp_path, colour_rows, caption_rows)
    out = tmp_path / "results"
    fresh(capsys)
    assert run("--model", str(tiny_vtde), "--tasks", *args, "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")) == 2
    one_line_error(capsys, *fragments)
    assert result_files(out) == []


@pytest.mark.parametrize("option", ["--output-dir", "--cache-dir"])
def test_folder_under_a_regular_file_exits_2(option, tiny_vtde, tmp_path, colour_rows, capsys):
    """Tests run as root, so permission bits prove nothing: a path under a regular file cannot be created by anyone."""
    card = helpers.colour_card(tmp_path, colour_rows)
    (tmp_path / "a-file").write_text("x")
    folders = {"--output-dir": tmp_path / "results", "--cache-dir": tmp_path / "cache"}
    folders[option] = tmp_path / "a-file" / "sub"
    fresh(capsys)
    assert run("--model", str(tiny_vtde), "--tasks", str(card), *(a for k, v in folders.items() for a in (k, str(v)))) == 2
    one_line_error(capsys, "cannot write", str(tmp_path / "a-file" / "sub"), f"choose another {option}")
    assert result_files(tmp_path / "results") == [] and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 1. bad images: reported by key, or skipped and counted


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a few bytes of pixel data: nothing of that size is ever allocated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "case, reason",
    [("truncated", "image file is truncated"), ("zero-byte", "cannot identify image file"),
     ("decompression-bomb", "DecompressionBombError")],
)
def test_bad_image_is_reported_by_key_or_skipped_and_counted(case, reason, tiny_vtde, tmp_path, colour_rows, capsys):
    """(A corrupt image is in test_cli.py.) Guards a bug: a zero-byte image in a parquet copy could not be skipped."""
    limit_before = Image.MAX_IMAGE_PIXELS
    rows = list(colour_rows)
    good = rows[3][0]
    blob = {"truncated": good[: len(good) // 2], "zero-byte": b"", "decompression-bomb": _png_header_only(30000, 30000)}[case]
    rows[3] = (blob, rows[3][1])
    card = helpers.colour_card(tmp_path, rows)
    out = tmp_path / "results"
    args = ("--model", str(tiny_vtde), "--tasks", str(card), "--output-dir", str(out), "--no-cache")
    fresh(capsys)
    assert run(*args) == 2
    one_line_error(capsys, "image '3' (row 3) cannot be decoded", reason, "--skip-bad-images")
    assert result_files(out) == []

    assert run(*args, "--skip-bad-images") == 0
    notes = capsys.readouterr().err
    # Issue #14 item 3: the note named Pillow's buffer ("<_io.BytesIO object at 0x...>"), not the image.
    assert "skipped bad image '3'" in notes and "BytesIO" not in notes and reason.split()[0] in notes
    result = json.loads(next(out.glob("*/colours.json")).read_text())
    assert result["dataset"]["num_bad_images"] == 1 and result["dataset"]["bad_image_keys"] == ["3"]
    assert result["dataset"]["num_images"] == len(rows) - 1
    assert len(pd.read_parquet(next(out.glob("*/colours.samples.parquet")))) == len(rows) - 1
    assert Image.MAX_IMAGE_PIXELS == limit_before  # Pillow's limit kept, not raised or switched off


# ----------------------------------------------------------------------------- 2. unusual but valid images


def test_unusual_image_modes_embed_like_their_rgb_pixels(tiny_vtde, tmp_path):
    """CMYK, L, RGBA, P and 16-bit images, through the real pipeline (a parquet copy, load_task_data, embed_images),
    embed exactly like an RGB image of the pixels they show; a 16-bit image like its 8-bit twin."""
    from vtde_bench.data import load_task_data
    from vtde_bench.embedding import embed_images
    from vtde_bench.encoders import load_model
    from vtde_bench.tasks import load_card

    from transformers.image_transforms import convert_to_rgb

    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(90, 40, size=(32, 32, 3)), 0, 255).astype(np.uint8)  # dark and varied: white would hide the 16-bit trap
    rgb[:, :, 0] = np.linspace(0, 255, 32, dtype=np.uint8)  # a ramp across the full range
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    palette = Image.fromarray(rgb).quantize(colors=16)
    wide = Image.fromarray(gray.astype(np.uint16) * 257)  # v * 257 is the exact 16-bit twin of the 8-bit v
    assert wide.mode == "I;16"
    rgba = np.dstack([rgb, rng.integers(1, 256, size=(32, 32), dtype=np.uint8)])
    cases = {  # name: (stored bytes, the RGB pixels the image shows)
        "rgb": (helpers.encode(Image.fromarray(rgb)), rgb),
        "cmyk": (helpers.encode(Image.fromarray(rgb).convert("CMYK"), "TIFF"), rgb),  # lossless: RGB → CMYK → RGB is exact
        "l": (helpers.encode(Image.fromarray(gray)), np.repeat(gray[:, :, None], 3, axis=2)),
        # composited onto white, as transformers' processors do (convert_to_rgb)
        "rgba": (helpers.encode(Image.fromarray(rgba, "RGBA")), convert_to_rgb(Image.fromarray(rgba, "RGBA"), return_numpy=True)),
        "p": (helpers.encode(palette), np.array(palette.getpalette(), dtype=np.uint8).reshape(-1, 3)[np.asarray(palette)]),
        "i16": (helpers.encode(wide), np.repeat(gray[:, :, None], 3, axis=2)),
    }
    assert Image.open(io.BytesIO(cases["cmyk"][0])).mode == "CMYK" and Image.open(io.BytesIO(cases["p"][0])).mode == "P"
    assert Image.open(io.BytesIO(cases["i16"][0])).mode.startswith("I")
    rows = [(blob, i % len(COLOUR_NAMES)) for i, (blob, _) in enumerate(cases.values())]
    data = load_task_data(load_card(helpers.colour_card(tmp_path, rows)))
    model = load_model(tiny_vtde, device="cpu")
    got = embed_images(model, data, batch_size=4, workers=0, chunk_rows=1024)
    assert got.indices == list(range(len(cases))) and got.bad == []
    expected = model.encode_images([Image.fromarray(pixels) for _, pixels in cases.values()])
    for i, name in enumerate(cases):
        assert torch.allclose(got.embeddings[i], expected[i], atol=1e-5), name
    twin = list(cases).index("l")
    assert torch.allclose(got.embeddings[list(cases).index("i16")], got.embeddings[twin], atol=1e-5)

    # The guard matters: without scaling, convert("RGB") turns the 16-bit image nearly white, and its embedding moves away.
    naive_image = Image.open(io.BytesIO(cases["i16"][0])).convert("RGB")
    assert np.asarray(naive_image).mean() > 240 and np.asarray(Image.fromarray(gray)).mean() < 120
    naive = model.encode_images([naive_image])[0]
    assert float(naive @ got.embeddings[twin]) < 0.9 and 0.9999 < float(got.embeddings[list(cases).index("i16")] @ got.embeddings[twin])


# ----------------------------------------------------------------------------- 3. faults: concurrent runs


RACER = textwrap.dedent("""
    # `vtde-bench run`, made to meet its twin at the embedding loop, so that both really run at once.
    import os, sys, time
    from pathlib import Path
    import vtde_bench.embedding as embed
    from vtde_bench.cli import main

    meeting = Path(sys.argv[1])
    original = embed._run_chunks

    def run_chunks(*args, **kwargs):
        if not list(meeting.glob(f"{os.getpid()}.here")):
            (meeting / f"{os.getpid()}.here").touch()
            deadline = time.monotonic() + 120
            while len(list(meeting.glob("*.here"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        return original(*args, **kwargs)

    embed._run_chunks = run_chunks
    sys.exit(main(sys.argv[2:]))
""")


def test_two_runs_at_once_both_finish_and_agree(tiny_vtde, tmp_path, colour_rows, capsys):
    card = helpers.colour_card(tmp_path, colour_rows)
    out, cache, meeting = tmp_path / "results", tmp_path / "cache", tmp_path / "meeting"
    meeting.mkdir()
    args = ["run", "--model", str(tiny_vtde), "--tasks", str(card), "--output-dir", str(out), "--cache-dir", str(cache),
            "--workers", "0", "--batch-size", "2", "--chunk-rows", "4", "--bootstrap", "20"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(meeting), *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outputs]
    assert len(list(meeting.glob("*.here"))) == 2  # both reached the embedding loop: neither reused the other's result
    assert not any("reusing" in e for _, e in outputs)

    (path,) = out.glob("*/colours.json")
    shared = json.loads(path.read_text())  # valid JSON: one writer's whole file, never a mix
    assert result_files(out) == [path, path.with_name("colours.samples.parquet")] and leftovers(tmp_path) == []
    assert not list(cache.rglob("*.tmp"))
    for entry in cache.glob("*/*"):  # every chunk has its checksum, and every checksum its chunk
        assert sorted(p.stem for p in entry.glob("chunk-*.pt")) == sorted(p.stem for p in entry.glob("chunk-*.sha256"))

    # A third run reads every chunk from the cache and gives the same numbers as a run without any cache.
    assert main([*args, "--output-dir", str(tmp_path / "third")]) == 0
    third = json.loads(next((tmp_path / "third").glob("*/colours.json")).read_text())
    assert third["run"]["cache"]["image_chunks_from_cache"] == third["run"]["cache"]["image_chunks"] == 6
    assert main([*args, "--output-dir", str(tmp_path / "fresh"), "--no-cache"]) == 0
    fresh = json.loads(next((tmp_path / "fresh").glob("*/colours.json")).read_text())
    assert shared["metrics"] == third["metrics"] == fresh["metrics"]
    assert shared["intervals"] == third["intervals"] == fresh["intervals"]


# ----------------------------------------------------------------------------- 3. faults: damaged result files


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _alter(text: str) -> str:
    data = json.loads(text)
    data["metrics"] = [data["metrics"]]  # a bad hand edit or merge: still JSON, no longer a result
    return json.dumps(data)


def _unmatched_main_score(text: str) -> str:
    data = json.loads(text)
    data["main_score"] = 0.99
    return json.dumps(data)


@pytest.mark.parametrize("damage", [_truncate, _alter, _unmatched_main_score], ids=["truncated", "altered", "main-score"])
def test_damaged_result_is_recomputed_by_run_and_reported_by_the_readers(damage, tiny_vtde, tmp_path, colour_rows, capsys):
    """Guards a bug: an altered result (valid JSON, wrong shape) crashed `run`, `leaderboard` and `compare` (exit 3)."""
    card = helpers.colour_card(tmp_path, colour_rows)
    out = tmp_path / "results"
    args = ("--model", str(tiny_vtde), "--tasks", str(card), "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert run(*args) == 0
    (path,) = out.glob("*/colours.json")
    good = path.read_text()
    shutil.copytree(out, tmp_path / "baseline")
    path.write_text(damage(good))
    capsys.readouterr()

    for command in (["leaderboard", str(out), "--no-published"], ["compare", str(out), "--baseline", str(tmp_path / "baseline")]):
        assert main(command) == 2, command
        one_line_error(capsys, str(path.resolve()), "rerun")

    assert run(*args) == 0  # recomputed, not reused
    assert "reusing" not in capsys.readouterr().err
    again = json.loads(path.read_text())
    assert again["metrics"] == json.loads(good)["metrics"] and again["main_score"] == json.loads(good)["main_score"]
    assert main(["compare", str(out), "--baseline", str(tmp_path / "baseline")]) == 0


# ----------------------------------------------------------------------------- 3. faults: a disk that fills up mid-write


FILL_UP = textwrap.dedent("""
    # Several `vtde-bench run`s in one process whose files may not grow past RLIMIT_FSIZE (set by the parent).
    import json, sys
    from vtde_bench.cli import main

    for args in json.loads(sys.argv[1]):
        print("@@@ start", file=sys.stderr, flush=True)
        code = main(args)
        print(f"@@@ exit {code}", file=sys.stderr, flush=True)
""")
FILE_LIMIT = 2000  # bytes: more than key.json, less than the arrow cache, a result's parquet or an embedding chunk


def _limit_file_size() -> None:
    # Ignore SIGXFSZ so that a write past the limit fails with EFBIG ("File too large") instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def test_disk_full_mid_write_exits_2_and_leaves_no_partial_files(tiny_vtde, tmp_path, colour_rows):
    """The real kernel error (EFBIG from RLIMIT_FSIZE), in the datasets cache, our result writer and our embedding cache."""
    arrow_card = helpers.colour_card(tmp_path, colour_rows, name="arrowed", layout="arrow")  # read in place: no datasets cache write
    parquet_card = helpers.colour_card(tmp_path, colour_rows, name="parqueted")  # `datasets` converts it into its arrow cache first
    common = ["run", "--model", str(tiny_vtde), "--workers", "0", "--bootstrap", "0"]
    scenarios = {
        "datasets-cache": [*common, "--tasks", str(parquet_card), "--output-dir", str(tmp_path / "out1"), "--no-cache"],
        "result": [*common, "--tasks", str(arrow_card), "--output-dir", str(tmp_path / "out2"), "--no-cache"],
        "embedding-cache": [*common, "--tasks", str(arrow_card), "--output-dir", str(tmp_path / "out3"),
                            "--cache-dir", str(tmp_path / "cache")],
    }
    datasets_cache = tempfile.mkdtemp(dir=tmp_path, prefix="hf-datasets-")
    env = {**os.environ, "HF_DATASETS_CACHE": datasets_cache, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", FILL_UP, json.dumps(list(scenarios.values()))], env=env,
                          preexec_fn=_limit_file_size, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stderr.split("@@@ start\n")[1:]
    assert len(parts) == 3, done.stderr[-3000:]
    messages = {}
    for name, part in zip(scenarios, parts):
        lines = [line for line in part.strip().splitlines() if line.strip()]
        assert lines[-1] == "@@@ exit 2", (name, part[-2000:])
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in part, (name, part[-2000:])
        messages[name] = errors[0]
    assert "cannot write the datasets cache (File too large)" in messages["datasets-cache"]
    assert "HF_DATASETS_CACHE" in messages["datasets-cache"]
    assert f"cannot write {tmp_path / 'out2'}" in messages["result"] and "(File too large); free space or choose another --output-dir" in messages["result"]
    assert f"cannot write {tmp_path / 'cache'}" in messages["embedding-cache"] and "--cache-dir" in messages["embedding-cache"]

    for out in ("out1", "out2", "out3"):  # no result, no half-written file, no temporary file
        assert result_files(tmp_path / out) == [] and leftovers(tmp_path / out) == []
    assert leftovers(tmp_path / "cache") == []
    for entry in (tmp_path / "cache").glob("*/*"):  # a chunk counts only with its checksum: none may stand alone
        assert sorted(p.stem for p in entry.glob("chunk-*.pt")) == sorted(p.stem for p in entry.glob("chunk-*.sha256"))

    # With room on the disk, the same cache folder works: nothing half-written in it is trusted or in the way.
    assert main(scenarios["embedding-cache"]) == 0
    assert json.loads(next((tmp_path / "out3").glob("*/arrowed.json")).read_text())["dataset"]["num_images"] == len(colour_rows)


# ----------------------------------------------------------------------------- 5. determinism and provenance


def test_result_records_everything_needed_to_repeat_the_run(tiny_clip, tmp_path, colour_rows):
    """(Two fp32 runs giving identical metrics is test_cli.py::test_two_runs_give_identical_metrics.)
    Every option that shapes the numbers is in the JSON, and re-running from the JSON alone gives the same numbers."""
    card = helpers.colour_card(tmp_path, colour_rows)
    first_out = tmp_path / "first"
    assert main(["run", "--model", str(tiny_clip), "--tasks", str(card), "--output-dir", str(first_out), "--precision", "fp32",
                 "--device", "cpu", "--batch-size", "5", "--workers", "0", "--limit", "20", "--bootstrap", "50", "--no-cache"]) == 0
    result = json.loads(next(first_out.glob("*/colours.json")).read_text())
    model, dataset, task, run_info = result["model"], result["dataset"], result["task"], result["run"]
    assert model["path"] == str(tiny_clip) and model["revision"] is None and "resolved_commit" in model
    assert len(model["weights_fingerprint"]) == 64 and model["model_type"] == "clip"
    assert dataset["source"] == str(card.parent / "colours-data") and dataset["split"] == "test"
    assert "revision" in dataset and "hub" in dataset and dataset["layout"] == "parquet" and len(dataset["fingerprint"]) == 64
    assert task["name"] == "colours" and task["version"] == 1 and task["card"] == str(card.resolve())
    assert (run_info["precision"], run_info["device"], run_info["batch_size"], run_info["workers"], run_info["limit"]) == ("fp32", "cpu", 5, 0, 20)
    assert run_info["bootstrap_resamples"] == 50 and run_info["bootstrap_seed"] == 0 and run_info["skip_bad_images"] is False
    assert {"vtde_bench", "python", "torch", "transformers", "datasets"} <= set(run_info["versions"])

    again_out = tmp_path / "again"
    assert main(["run", "--model", model["path"], "--tasks", task["card"], "--output-dir", str(again_out),
                 "--precision", run_info["precision"], "--device", run_info["device"], "--batch-size", str(run_info["batch_size"]),
                 "--workers", str(run_info["workers"]), "--limit", str(run_info["limit"]),
                 "--bootstrap", str(run_info["bootstrap_resamples"]), "--no-cache"]) == 0
    again = json.loads(next(again_out.glob("*/colours.json")).read_text())
    assert again["metrics"] == result["metrics"] and again["intervals"] == result["intervals"]
    assert again["model"]["weights_fingerprint"] == model["weights_fingerprint"] and again["dataset"]["fingerprint"] == dataset["fingerprint"]
