"""Pinned sources, honestly: a hub card names a full 40-hex commit or says why it cannot (`source.unpinned`);
`vtde-bench tasks` marks such a card; `download` records the commit it fetched in the copy; results record the
commit their data are of. The hub itself is out of reach here: its two calls (resolve a branch, fetch a
snapshot) are stood in for by functions that record what they were asked and write the files a snapshot holds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from test_datacomp import write_datacomp_wds
from vtde_bench import RunOptions, evaluate
from vtde_bench.cli.tasks import task_row
from vtde_bench.data import load_task_data
from vtde_bench.data.download import download_task
from vtde_bench.data.provenance import RECORD
from vtde_bench.errors import UserError
from vtde_bench.progress import NullProgress
from vtde_bench.tasks import load_card, load_tasks

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LATER = "fedcba9876543210fedcba9876543210fedcba98"


def card(tmp_path: Path, source: str) -> Path:
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    (tmp_path / "templates.txt").write_text("a photo of a {c}.\n")
    path = tmp_path / "card.toml"
    path.write_text(f'name = "pins"\ntype = "zeroshot_classification"\nversion = 1\n[source]\n{source}\nformat = "webdataset"\n'
                    'split = "test"\nnum_samples = 4\n[prompts]\nclassnames = "names.txt"\ntemplates = "templates.txt"\n')
    return path


@pytest.mark.parametrize("source, problem", [
    ('hub = "org/set"\nrevision = "main"', "= 'main' is not a full 40-hex commit; pin the commit, or"),
    ('hub = "org/set"\nrevision = "0123456"', "is not a full 40-hex commit"),
    ('path = "data"\nunpinned = "no page"', "source.unpinned' says why a hub source's revision is a branch"),
    ('hub = "org/set"\nrevision = "main"\nunpinned = " "', "needs source.hub and a reason"),
])
def test_a_hub_card_pins_a_full_commit_or_says_why_not(tmp_path, source, problem):
    with pytest.raises(UserError, match=problem):
        load_card(card(tmp_path, source))


def test_an_unpinned_card_is_marked_in_the_listing(tmp_path):
    path = card(tmp_path, 'hub = "org/set"\nrevision = "main"\nunpinned = "no stored page shows a commit"')
    task = load_card(path)
    assert not task.source.pinned and task_row("pins", task, path)["source"] == "org/set@main (unpinned)"
    (pinned,) = load_tasks("cifar10")
    assert pinned.source.pinned and "unpinned" not in task_row("cifar10", pinned, pinned.card_path)["source"]
    assert all(t.source.pinned for t in load_tasks("datacomp"))  # every built-in card names a verified commit


def fake_hub(monkeypatch, calls: list, files: dict[str, bytes]):
    """Stand-ins for huggingface_hub's branch resolution and snapshot download: they record their arguments and
    write `files` as the snapshot."""
    import huggingface_hub

    def dataset_info(self, repo_id, revision=None, **kwargs):
        calls.append(("dataset_info", repo_id, revision))
        return type("Info", (), {"sha": LATER})()

    def snapshot_download(repo_id, repo_type, revision, allow_patterns, local_dir):
        calls.append(("snapshot_download", repo_id, revision))
        for name, data in files.items():
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / name).write_bytes(data)
        return local_dir

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


def wds_files(tmp_path: Path) -> dict[str, bytes]:
    write_datacomp_wds(tmp_path / "src", "pins", [0, 1, 1, 0], ["cat", "dog"], ["a photo of a {c}."])
    return {p.relative_to(tmp_path / "src").as_posix(): p.read_bytes() for p in (tmp_path / "src").rglob("*") if p.is_file()}


def test_download_of_an_unpinned_card_fetches_one_resolved_commit_and_records_it(tmp_path, monkeypatch, tiny_vtde):
    calls: list = []
    fake_hub(monkeypatch, calls, wds_files(tmp_path))
    task = load_card(card(tmp_path, 'hub = "org/set"\nrevision = "main"\nunpinned = "no stored page shows a commit"'))
    dest = download_task(task, tmp_path / "data")
    assert calls == [("dataset_info", "org/set", "main"), ("snapshot_download", "org/set", LATER)]
    assert json.loads((dest / RECORD).read_text()) == {"hub": "org/set", "revision": "main", "resolved_commit": LATER, "via": "hub"}
    result = evaluate(str(tiny_vtde), [task], options=RunOptions(output_dir=tmp_path / "out", data_dir=tmp_path / "data",
                                                                 workers=0, bootstrap=0))["pins"]
    assert result.dataset.revision == "main" and result.dataset.resolved_commit == LATER
    written = json.loads(next((tmp_path / "out").rglob("pins.json")).read_text())
    assert written["dataset"]["resolved_commit"] == LATER


def test_a_pinned_download_fetches_its_commit_and_a_copy_without_a_record_says_unknown(tmp_path, monkeypatch):
    calls: list = []
    fake_hub(monkeypatch, calls, wds_files(tmp_path))
    task = load_card(card(tmp_path, f'hub = "org/set"\nrevision = "{COMMIT}"'))
    dest = download_task(task, tmp_path / "data")
    assert calls == [("snapshot_download", "org/set", COMMIT)]  # nothing to resolve
    assert load_task_data(task, data_dir=tmp_path / "data").resolved_commit == COMMIT
    (dest / RECORD).unlink()  # a copy made by hand: its commit is unknown, and the result says so
    assert load_task_data(task, data_dir=tmp_path / "data").resolved_commit is None
    other = dataclasses.replace(task, source=dataclasses.replace(task.source, hub="org/other"))
    (dest / RECORD).write_text(json.dumps({"hub": "org/set", "resolved_commit": COMMIT}))
    assert load_task_data(other, data_dir=tmp_path / "data").resolved_commit is None  # a record of another repo


def test_a_mirror_vouches_for_pinned_revisions_only(tmp_path, monkeypatch):
    files = wds_files(tmp_path)
    for name, data in files.items():
        (tmp_path / "mirror" / "org" / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mirror" / "org" / "set" / name).write_bytes(data)
    monkeypatch.setenv("VTDE_BENCH_HUB_MIRROR", str(tmp_path / "mirror"))
    pinned = load_card(card(tmp_path, f'hub = "org/set"\nrevision = "{COMMIT}"'))
    record = json.loads((download_task(pinned, tmp_path / "a") / RECORD).read_text())
    assert record["resolved_commit"] == COMMIT and record["via"] == "mirror"
    unpinned = load_card(card(tmp_path, 'hub = "org/set"\nrevision = "main"\nunpinned = "why"'))
    notes = Notes()
    record = json.loads((download_task(unpinned, tmp_path / "b", progress=notes) / RECORD).read_text())
    assert record["resolved_commit"] is None
    assert notes.lines == [f"pins: org/set@main is unpinned; downloaded commit unknown (a mirror), recorded in "
                           f"{tmp_path / 'b' / 'pins' / RECORD}"]


class Notes(NullProgress):
    def __init__(self):
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)
