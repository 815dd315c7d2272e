"""Result records: schema, atomic writes, reading back, and the reuse check."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vtde_bench.errors import UserError
from vtde_bench.files import atomic_write
from vtde_bench.profile import Profile
from vtde_bench.results import (SCHEMA_VERSION, DatasetRecord, ModelRecord, RunRecord, TaskRecord, TaskResult, find_existing,
                                read_result, write_result)

PROFILE = Profile(task_type="retrieval", task_version=1, main_metric="mean_recall@1", split="test", config=None,
                  image_column="image", label_column=None, caption_column="captions", kind_fields={}, limit=None,
                  precision="fp32", bootstrap=0, bootstrap_seed=0, skip_bad_images=False, image_preprocessing="i",
                  text_preprocessing="t")


def make_result(*, profile: Profile | None = PROFILE, **changes) -> TaskResult:
    fields = dict(
        task=TaskRecord(name="t", version=1, type="retrieval", main_metric="mean_recall@1"),
        model=ModelRecord(path="m", slug="m-12345678", weights_fingerprint="w" * 64, extra={"image_preprocessing": "batched"}),
        dataset=DatasetRecord(source="s", fingerprint="d" * 64, num_images=2, num_texts=3, num_blank_captions=0),
        metrics={"mean_recall@1": 0.5},
        main_score=0.5,
        run=RunRecord(precision="fp32", device="cpu", profile=profile),
        samples=pd.DataFrame({"query": ["image"], "key": ["a"], "caption_index": [-1], "rank": [1]}),
    )
    fields.update(changes)
    return TaskResult(**fields)


def test_round_trip(tmp_path):
    result = make_result(intervals={"mean_recall@1": (0.25, 0.75)}, warnings=("careful",))
    path = write_result(result, tmp_path)
    assert path == tmp_path / "m-12345678" / "t.json"
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 2
    again = read_result(path)
    assert again == result and again.path == path and again.run.profile == PROFILE
    assert again.to_json() == result.to_json()
    assert (tmp_path / "m-12345678" / "t.samples.parquet").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "no temporary files left behind"
    assert path.stat().st_mode & 0o044 == 0o044, "readable by others, like any file (mkstemp makes 0600)"


# A result file exactly as vtde-bench wrote it before results were typed (schema 1), trimmed of timings.
SCHEMA_1 = {
    "schema_version": 1,
    "task": {"name": "colours", "version": 1, "type": "zeroshot_classification", "main_metric": "acc1", "card": "/c/colours.toml"},
    "model": {"path": "/m/tiny-vtde", "revision": None, "resolved_commit": None, "weights_fingerprint": "8f304d17" + "0" * 56,
              "num_parameters": 70544, "embedding_dim": 16, "model_type": "vision-text-dual-encoder", "slug": "tiny-vtde-8f304d17",
              "image_preprocessing": "batched"},
    "dataset": {"source": "/d/colours", "hub": None, "revision": None, "split": "test", "layout": "parquet", "location": "/d/colours",
                "fingerprint": "e" * 64, "num_images": 23, "num_texts": 12, "num_bad_images": 0, "bad_image_keys": []},
    "metrics": {"acc1": 0.17391304347826086, "acc5": 0.8260869565217391, "mean_per_class_recall": 0.16666666666666666},
    "main_score": 0.17391304347826086,
    "run": {"precision": "fp32", "device": "cpu", "batch_size": 64, "batch_size_used": 64, "workers": 0, "limit": None,
            "limited": False, "skip_bad_images": False, "bootstrap_resamples": 1000, "bootstrap_seed": 0,
            "date": "2026-11-30T10:00:00+00:00", "timings": {"task_total_s": 0.4}, "versions": {"torch": "2.14.1"},
            "world_size": 1, "cache": {"enabled": True}},
    "per_class_recall": {"red": 0.0, "green": 1.0},
    "intervals": {"acc1": [0.043, 0.347]},
}


def test_a_schema_1_file_loads_with_every_field(tmp_path):
    path = tmp_path / "colours.json"
    path.write_text(json.dumps(SCHEMA_1))
    result = read_result(path)
    assert result.schema_version == SCHEMA_VERSION  # read into today's record
    assert result.task == TaskRecord(name="colours", version=1, type="zeroshot_classification", main_metric="acc1",
                                     card="/c/colours.toml")
    assert result.model.slug == "tiny-vtde-8f304d17" and result.model.extra == {"image_preprocessing": "batched"}
    assert result.dataset.num_images == 23 and result.dataset.bad_image_keys == () and result.dataset.num_blank_captions is None
    assert result.run.batch_size == 64 and result.run.profile is None and not result.run.limited
    assert result.metrics == SCHEMA_1["metrics"] and result.intervals == {"acc1": (0.043, 0.347)} and result.warnings == ()
    assert result.model_name == "tiny-vtde-8f304d17" and result.task_name == "colours" and result.limit is None
    # What it says of itself survives the trip to today's schema, but for the version.
    again = result.to_json()
    for section in ("task", "model", "dataset", "metrics", "main_score", "per_class_recall", "intervals"):
        assert again[section] == SCHEMA_1[section], section
    assert {k: v for k, v in again["run"].items()} == SCHEMA_1["run"]


def test_nan_metrics_are_refused(tmp_path):
    """JSON has no NaN; writing one would give a file other tools cannot read."""
    with pytest.raises(ValueError):
        write_result(make_result(metrics={"x": float("nan")}), tmp_path)
    assert not (tmp_path / "m-12345678").exists()


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def explode(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_unwritable_output_is_a_user_error(tmp_path):
    """Tests run as root, so a path under a regular file stands in for a read-only folder."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        write_result(make_result(), tmp_path / "file" / "sub")


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "not a vtde-bench result"), ('{"schema_version": 99}', "schema_version"),
     ('{"schema_version": 1}', "missing"), ('{"schema_version": 2}', "missing")],
)
def test_bad_result_files_are_reported(tmp_path, text, message):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_result(path)


@pytest.mark.parametrize("section, key, value", [("dataset", "fingerprint", None), ("dataset", "source", 3),
                                                ("dataset", "num_images", "23"), ("dataset", "num_texts", True),
                                                ("run", "precision", None), ("run", "device", None)])
def test_a_result_lacking_a_required_field_is_damaged_not_filled_in(tmp_path, section, key, value):
    """Guards a bug: a missing fingerprint or image count was read as "" or 0, as if the result said so."""
    data = json.loads(json.dumps(SCHEMA_1))
    if value is None:
        del data[section][key]
    else:
        data[section][key] = value
    path = tmp_path / "colours.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=rf"damaged result \('{section}\.{key}' is missing or not"):
        read_result(path)


def test_find_existing_matches_on_weights_data_and_profile(tmp_path):
    path = write_result(make_result(), tmp_path)
    same = dict(weights="w" * 64, dataset="d" * 64, profile=PROFILE.fingerprint)
    assert find_existing(path, **same) is not None
    for change in ({"weights": "x" * 64}, {"dataset": "x" * 64}, {"profile": "x" * 64}):
        assert find_existing(path, **{**same, **change}) is None
    path.write_text(path.read_text()[:40])  # a truncated result is recomputed, never trusted
    assert find_existing(path, **same) is None


def test_a_result_written_before_profiles_is_never_reused(tmp_path):
    path = write_result(make_result(profile=None), tmp_path)
    assert find_existing(path, weights="w" * 64, dataset="d" * 64, profile=PROFILE.fingerprint) is None
    schema_1 = tmp_path / "old" / "t.json"
    schema_1.parent.mkdir()
    schema_1.write_text(json.dumps(SCHEMA_1))
    schema_1.with_name("t.samples.parquet").write_bytes(b"")
    assert find_existing(schema_1, weights=SCHEMA_1["model"]["weights_fingerprint"], dataset="e" * 64,
                         profile=PROFILE.fingerprint) is None
