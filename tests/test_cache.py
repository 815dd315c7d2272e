"""The embedding cache: re-runs read it, damage is recomputed, a killed run resumes; torchrun shards the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from vtde_bench.cache import Chunk, EmbeddingCache
from vtde_bench.cli import main


def run(model, card, out, cache, *extra):
    return main(["run", "--model", str(model), "--tasks", str(card), "--output-dir", str(out), "--cache-dir", str(cache),
                 "--workers", "0", "--batch-size", "4", "--chunk-rows", "8", "--bootstrap", "0", *extra])


def result(out) -> dict:
    return json.loads(next(Path(out).glob("*/colours.json")).read_text())


def test_rerun_reads_the_cache_and_says_so(tiny_vtde, card, tmp_path, capsys):
    assert run(tiny_vtde, card, tmp_path / "a", tmp_path / "cache") == 0
    first = result(tmp_path / "a")
    assert first["run"]["cache"] == {"enabled": True, "image_chunks": 3, "image_chunks_from_cache": 0}
    capsys.readouterr()
    assert run(tiny_vtde, card, tmp_path / "b", tmp_path / "cache") == 0
    assert "3 of 3 chunks of image embeddings read from the cache" in capsys.readouterr().err
    second = result(tmp_path / "b")
    assert second["metrics"] == first["metrics"] and second["run"]["cache"]["image_chunks_from_cache"] == 3
    assert run(tiny_vtde, card, tmp_path / "c", tmp_path / "nocache", "--no-cache") == 0
    assert not (tmp_path / "nocache").exists()
    assert result(tmp_path / "c")["metrics"] == first["metrics"]


def test_another_batch_size_reads_the_same_chunks(tiny_vtde, card, tmp_path, capsys):
    """Chunks are rows, not batches: a rerun with --batch-size 3 (which does not divide --chunk-rows 8) reuses them."""
    assert run(tiny_vtde, card, tmp_path / "a", tmp_path / "cache") == 0
    capsys.readouterr()
    assert run(tiny_vtde, card, tmp_path / "b", tmp_path / "cache", "--batch-size", "3") == 0
    assert "3 of 3 chunks of image embeddings read from the cache" in capsys.readouterr().err
    assert run(tiny_vtde, card, tmp_path / "c", tmp_path / "fresh", "--batch-size", "3") == 0
    assert result(tmp_path / "c")["metrics"] == result(tmp_path / "a")["metrics"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "checksum"])
def test_damaged_chunks_are_recomputed_never_trusted(tiny_vtde, card, tmp_path, damage):
    assert run(tiny_vtde, card, tmp_path / "a", tmp_path / "cache") == 0
    (entry,) = [k.parent for k in (tmp_path / "cache").rglob("key.json") if json.loads(k.read_text())["kind"] == "images"]
    chunk = sorted(entry.glob("chunk-*.pt"))[0]
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:50])
    elif damage == "flip":
        data = bytearray(chunk.read_bytes())
        data[-20] ^= 0xFF
        chunk.write_bytes(bytes(data))
    else:
        chunk.with_suffix(".sha256").write_text("0" * 64)
    assert run(tiny_vtde, card, tmp_path / "b", tmp_path / "cache", "--overwrite") == 0
    assert result(tmp_path / "b")["metrics"] == result(tmp_path / "a")["metrics"]
    assert result(tmp_path / "b")["run"]["cache"]["image_chunks_from_cache"] < 3


def test_cache_keys_separate_models_precision_and_row_order(tmp_path):
    cache = EmbeddingCache(tmp_path)
    base = {"kind": "images", "weights": "w", "preprocessing": "p", "precision": "fp32", "rows": "r"}
    folders = {cache.entry(base).folder}
    for change in ({"weights": "w2"}, {"precision": "bf16"}, {"rows": "r2"}, {"preprocessing": "p2"}, {"kind": "texts"}):
        folders.add(cache.entry({**base, **change}).folder)
    assert len(folders) == 6
    entry = cache.entry(base)
    entry.write(Chunk(0, 3, torch.eye(3), [0, 1, 2], []))
    assert torch.equal(entry.read(0, 3).embeddings, torch.eye(3))
    assert entry.read(3, 6) is None


def test_cache_info_and_clear(tiny_vtde, card, tmp_path, capsys):
    assert run(tiny_vtde, card, tmp_path / "a", tmp_path / "cache") == 0
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(tmp_path / "cache")]) == 0
    # 3 image chunks of 8 rows + 1 chunk of 12 prompts, and the image hashes behind the data fingerprint
    assert "2 entries, 4 chunks, image hashes of 1 datasets" in capsys.readouterr().out
    (tmp_path / "cache" / "notes.txt").write_text("mine")  # not the cache's: kept
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert EmbeddingCache(tmp_path / "cache").info()["entries"] == 0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["VTDE_BENCH_CACHE.txt", "notes.txt"]


def test_cache_clear_refuses_a_folder_the_cache_did_not_write(tmp_path, capsys):
    """Issue #14 item 1: `cache clear --cache-dir DIR` deleted every child of any folder (a dataset folder was lost)."""
    data = tmp_path / "my-dataset"
    (data / "train").mkdir(parents=True)
    (data / "train" / "0001.jpg").write_bytes(b"jpeg")
    (data / "ab").mkdir()  # a two-hex-digit name alone does not make a cache
    (data / "ab" / "notes.txt").write_text("x")
    assert main(["cache", "clear", "--cache-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "not a vtde-bench embedding cache" in err and "nothing was deleted" in err and len(err.strip().splitlines()) == 1
    assert (data / "train" / "0001.jpg").read_bytes() == b"jpeg" and (data / "ab" / "notes.txt").is_file()


def test_cache_clear_recognises_a_cache_written_before_the_marker(tmp_path):
    cache = EmbeddingCache(tmp_path / "old")
    entry = cache.entry({"kind": "texts", "x": 1})
    entry.write_json("image-hashes", ["a"])
    (tmp_path / "old" / "VTDE_BENCH_CACHE.txt").unlink()  # as caches were written before the marker existed
    assert cache.info()["image_hash_sets"] == 1
    assert cache.clear() > 0 and list((tmp_path / "old").iterdir()) == []
    assert EmbeddingCache(tmp_path / "absent").clear() == 0


SLOW_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from helpers import ColourModel
    from vtde_bench import RunOptions, evaluate

    class Slow(ColourModel):
        fingerprint = "slow-colour-model-v1"  # lets the cache key this object
        def encode_images(self, images):
            time.sleep(0.15)
            return super().encode_images(images)

    options = RunOptions(output_dir={out!r}, cache_dir={cache!r}, workers=0, batch_size=2, chunk_rows=4, bootstrap=0)
    evaluate(Slow(), [{card!r}], options=options)
""")


def slow_run(card, out, cache) -> subprocess.Popen:
    code = SLOW_RUN.format(tests=str(Path(__file__).parent), out=str(out), cache=str(cache), card=str(card))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_while_embedding_then_rerun_resumes(card, tmp_path):
    """Killed once a chunk is on disk (not after a guessed sleep), the re-run reuses it and matches a clean run."""
    cache = tmp_path / "cache"
    proc = slow_run(card, tmp_path / "killed", cache)
    deadline = time.monotonic() + 60
    while not list(cache.rglob("chunk-*.sha256")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed").exists() or not list((tmp_path / "killed").rglob("*.json")), "no result from a killed run"
    written = len(list(cache.rglob("chunk-*.sha256")))
    assert 1 <= written < 6  # 23 rows in chunks of 4: the run was stopped part way

    resumed = slow_run(card, tmp_path / "resumed", cache)
    assert resumed.wait(timeout=120) == 0, resumed.communicate()
    clean = slow_run(card, tmp_path / "clean", tmp_path / "clean-cache")
    assert clean.wait(timeout=120) == 0, clean.communicate()
    a = json.loads(next((tmp_path / "resumed").glob("*/colours.json")).read_text())
    b = json.loads(next((tmp_path / "clean").glob("*/colours.json")).read_text())
    assert a["metrics"] == b["metrics"] and a["per_class_recall"] == b["per_class_recall"]
    assert a["run"]["cache"]["image_chunks_from_cache"] >= 1 and b["run"]["cache"]["image_chunks_from_cache"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(next((tmp_path / "resumed").glob("*/*.parquet"))),
                                  pd.read_parquet(next((tmp_path / "clean").glob("*/*.parquet"))))


def test_torchrun_two_processes_match_a_single_process(tiny_vtde, card, tmp_path, colour_rows):
    """gloo on the CPU, 23 rows in chunks of 4 over 2 ranks: nothing counted twice, nothing dropped."""
    args = ["run", "--model", str(tiny_vtde), "--tasks", str(card), "--workers", "0", "--batch-size", "4",
            "--chunk-rows", "4", "--no-cache", "--bootstrap", "100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "vtde_bench", *args, "--output-dir", str(tmp_path / "ddp")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("zeroshot classification (%)") == 1  # rank 1 printed no table
    assert main([*args, "--output-dir", str(tmp_path / "single")]) == 0
    ddp, single = result(tmp_path / "ddp"), result(tmp_path / "single")
    assert ddp["run"]["world_size"] == 2 and single["run"]["world_size"] == 1
    assert ddp["dataset"]["num_images"] == single["dataset"]["num_images"] == len(colour_rows)
    assert ddp["metrics"] == single["metrics"] and ddp["intervals"] == single["intervals"]
    pd.testing.assert_frame_equal(pd.read_parquet(next((tmp_path / "ddp").glob("*/*.parquet"))),
                                  pd.read_parquet(next((tmp_path / "single").glob("*/*.parquet"))))
