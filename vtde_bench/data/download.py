"""`vtde-bench download`: fetch each task's source at its pinned revision into the `--data-dir` layout.

The files are the hub repo's own (parquet shards, or CLIP_benchmark tar shards
with their text files), so the copy loads through the same layout code as any
local copy. A mirror of hub repos on a shared filesystem can stand in for the
hub: set `VTDE_BENCH_HUB_MIRROR=/path`, holding `<org>/<name>/` folders laid out
like the repos.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

from vtde_bench.data.provenance import RECORD, resolve_commit, write_record
from vtde_bench.errors import UserError
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.spec import TaskSpec as Task

MIRROR_ENV = "VTDE_BENCH_HUB_MIRROR"
WDS_ROOT_FILES = ("classnames.txt", "zeroshot_classification_templates.txt", "dataset_type.txt")


def file_patterns(task: Task) -> list[str]:
    """The repo files a task needs: its split's shards and, for webdataset repos, the root text files."""
    src = task.source
    if task.kind.needs == "instances":
        from vtde_bench.data.instances import source_files

        return source_files(task)
    splits = task.kind.splits(task)  # a probe reads its train split too
    if src.format == "webdataset":
        return [f"{split}/*" for split in splits] + list(WDS_ROOT_FILES)
    prefixes = [f"{src.config}/", ""] if src.config else ["", "data/"]
    return [f"{p}{split}{sep}" for split in splits for sep in ("-*.parquet", "/*.parquet") for p in prefixes]


def _from_mirror(mirror: Path, task: Task, patterns: list[str], dest: Path) -> int:
    root = mirror / task.source.hub
    if not root.is_dir():
        raise UserError(f"{MIRROR_ENV}={mirror} has no folder {task.source.hub}; mirror the repo there or unset it")
    copied = 0
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and any(fnmatch.fnmatchcase(relative, p) for p in patterns):
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / relative)
            copied += 1
    return copied


def _from_hub(task: Task, patterns: list[str], dest: Path, commit: str) -> int:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot_download(
            repo_id=task.source.hub, repo_type="dataset", revision=commit, allow_patterns=patterns, local_dir=str(dest),
        )
    except GatedRepoError:
        raise UserError(f"task {task.name}: {task.source.hub} is gated; accept its conditions on "
                        f"https://huggingface.co/datasets/{task.source.hub}, then log in (huggingface-cli login) or set "
                        "HF_TOKEN to a token of that account") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise UserError(f"task {task.name}: cannot download {task.source.describe()} ({str(e).splitlines()[0]}); check the network") from None
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping, not data
    return sum(1 for p in dest.rglob("*") if p.is_file())


def download_task(task: Task, to: str | Path, *, overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Fetch `task`'s source into `to/<task name>/`, atomically (a half-done download leaves nothing).

    Raises:
        UserError: the task has no hub source, the copy exists (without `overwrite`), or nothing matched.
    """
    progress = progress or NullProgress()
    if task.source.hub is None:
        raise UserError(f"task {task.name} reads local data ({task.source.path}); there is nothing to download")
    dest = Path(to) / task.name
    if dest.exists() and not overwrite:
        progress.note(f"{task.name}: {dest} exists; keeping it (--overwrite to fetch again)")
        return dest
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        from vtde_bench import hub

        hub.check_reachable(f"downloading task {task.name}", f"check your network, or set {MIRROR_ENV} to a local mirror")
    made = [p for p in (Path(to), *Path(to).parents) if not p.exists()]  # the folders this call creates
    try:
        Path(to).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=to, prefix=f".{task.name}."))
    except OSError as e:
        raise UserError(f"cannot write to {to} ({e.strerror or e}); choose another --to folder") from None
    patterns = file_patterns(task)
    try:
        with progress.bar(f"Downloading {task.name} ({task.source.describe()})", total=None):
            if mirror:  # a mirror holds files, not commits: it vouches for a pinned revision only
                count, commit = _from_mirror(Path(mirror), task, patterns, staging), task.source.revision if task.source.pinned else None
            else:
                commit = resolve_commit(task)  # an unpinned branch, once: every file of the copy from one commit
                count = _from_hub(task, patterns, staging, commit)
        if count == 0:
            raise UserError(f"task {task.name}: no files of split '{task.source.split}' in {task.source.describe()} ({', '.join(patterns)})")
        write_record(staging, task, commit, "mirror" if mirror else "hub")
        if not task.source.pinned:
            progress.note(f"{task.name}: {task.source.hub}@{task.source.revision} is unpinned; downloaded commit "
                          f"{commit or 'unknown (a mirror)'}, recorded in {dest / RECORD}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # a failed download leaves no empty --to behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return dest
