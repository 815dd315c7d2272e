"""Result records: schema, atomic writes, reading back, and the reuse check."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vtde_bench.errors import UserError
from vtde_bench.results import SCHEMA_VERSION, TaskResult, atomic_write, find_existing, read_result


def make_result(**changes) -> TaskResult:
    fields = dict(
        task={"name": "t", "version": 1, "type": "retrieval", "main_metric": "mean_recall@1", "card": None},
        model={"path": "m", "slug": "m-12345678", "weights_fingerprint": "w" * 64},
        dataset={"fingerprint": "d" * 64, "num_images": 2, "num_texts": 3},
        metrics={"mean_recall@1": 0.5},
        main_score=0.5,
        run={"limit": None, "timings": {}},
        samples=pd.DataFrame({"query": ["image"], "key": ["a"], "caption_index": [-1], "rank": [1]}),
    )
    fields.update(changes)
    return TaskResult(**fields)


def test_round_trip(tmp_path):
    result = make_result()
    path = result.write(tmp_path)
    assert path == tmp_path / "m-12345678" / "t.json"
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    again = read_result(path)
    assert again.to_dict() == result.to_dict()
    assert (tmp_path / "m-12345678" / "t.samples.parquet").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "no temporary files left behind"
    assert path.stat().st_mode & 0o044 == 0o044, "readable by others, like any file (mkstemp makes 0600)"


def test_nan_metrics_are_refused(tmp_path):
    """JSON has no NaN; writing one would give a file other tools cannot read."""
    with pytest.raises(ValueError):
        make_result(metrics={"x": float("nan")}).write(tmp_path)
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
        make_result().write(tmp_path / "file" / "sub")


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "not a vtde-bench result"), ('{"schema_version": 99}', "schema_version"),
     ('{"schema_version": 1}', "missing")],
)
def test_bad_result_files_are_reported(tmp_path, text, message):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_result(path)


def test_find_existing_matches_on_weights_data_and_profile(tmp_path):
    path = make_result(run={"limit": None, "timings": {}, "profile": {"fingerprint": "p" * 64}}).write(tmp_path)
    same = dict(weights="w" * 64, dataset="d" * 64, profile="p" * 64)
    assert find_existing(path, **same) is not None
    for change in ({"weights": "x" * 64}, {"dataset": "x" * 64}, {"profile": "x" * 64}):
        assert find_existing(path, **{**same, **change}) is None
    path.write_text(path.read_text()[:40])  # a truncated result is recomputed, never trusted
    assert find_existing(path, **same) is None


def test_a_result_written_before_profiles_is_never_reused(tmp_path):
    path = make_result().write(tmp_path)
    assert find_existing(path, weights="w" * 64, dataset="d" * 64, profile="p" * 64) is None
