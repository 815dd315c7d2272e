"""`export --push REPO`: propose exported files as a pull request on a Hub model repo, never a commit to main.

The proposal is computed first (each file against the repo's current one) and printed as a unified diff; only
`--yes` opens it, with huggingface_hub's `create_commit(create_pr=True)` and the token in `HF_TOKEN`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from vtde_bench.errors import UserError


@dataclass(frozen=True)
class Proposal:
    files: dict[str, str]  # path in the repo → the proposed text, for the files that change
    diff: str

    @property
    def changed(self) -> bool:
        return bool(self.files)


def _current(repo: str, path: str) -> str | None:
    """The repo's file at main, or None when it has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, path, repo_type="model")).read_text(encoding="utf-8")
    except EntryNotFoundError:
        return None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise UserError(f"--push {repo}: cannot read its {path} ({str(e).splitlines()[0]}); check the repo id and network") from None


def current_card(repo: str) -> str:
    """The repo's README.md (empty when it has none), to merge into."""
    return _current(repo, "README.md") or ""


def propose(repo: str, files: dict[str, str]) -> Proposal:
    """The files that would change in the repo, and their diff against what it holds now."""
    changed, parts = {}, []
    for path, text in files.items():
        before = _current(repo, path)
        if before == text:
            continue
        changed[path] = text
        parts.append("".join(difflib.unified_diff((before or "").splitlines(True), text.splitlines(True),
                                                  fromfile=f"a/{path}" if before is not None else "/dev/null",
                                                  tofile=f"b/{path}")))
    return Proposal(changed, "".join(parts))


def open_pull_request(repo: str, proposal: Proposal, model: str) -> str:
    """Open the proposal as a pull request on `repo` (never a commit to main); its URL.

    Raises:
        UserError: no token, or the Hub refused.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise UserError("--push --yes needs a Hub token with write access to the repo in HF_TOKEN")
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=text.encode("utf-8")) for path, text in proposal.files.items()]
    try:
        info = HfApi(token=token).create_commit(repo, operations, commit_message=f"Add vtde-bench evaluation results of {model}",
                                                commit_description="Opened by `vtde-bench export --push`.", repo_type="model",
                                                create_pr=True)
    except HfHubHTTPError as e:
        raise UserError(f"--push {repo}: the Hub refused the pull request ({str(e).splitlines()[0]})") from None
    return info.pr_url or f"{repo}: nothing changed (no pull request opened)"
