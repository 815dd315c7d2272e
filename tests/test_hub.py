"""An unreachable hub fails in seconds, not after a minute of retries (issue #14 item 3), and a model in the
hub cache still loads from there. Real subprocesses with `HF_ENDPOINT` at local sockets, `HF_HUB_OFFLINE` unset."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

ROOT = Path(__file__).resolve().parent.parent
BOUND_S = 10  # generous for a loaded CI machine; measured: about 1 s refused, 4 s silent; 25-50 s before the probe


@pytest.fixture(params=["closed-port", "silent-socket"])
def endpoint(request):
    """A local port nothing listens on (connection refused), or a socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if request.param == "closed-port":
        server.close()
        yield f"http://127.0.0.1:{port}"
    else:
        server.listen(8)
        yield f"http://127.0.0.1:{port}"
        server.close()


def cli(tmp_path: Path, endpoint: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vtde_bench", *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    return done, time.perf_counter() - started


def test_a_hub_model_fails_at_once_when_the_hub_cannot_be_reached(tmp_path, endpoint):
    done, seconds = cli(tmp_path, endpoint, "run", "--model", "org/no-such-model", "--tasks", "demo")
    assert done.returncode == 2, done.stderr
    assert "cannot be reached" in done.stderr and "--model org/no-such-model" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and seconds < BOUND_S
    assert not (tmp_path / "results").exists()


def test_download_fails_at_once_and_leaves_no_empty_folder(tmp_path, endpoint):
    done, seconds = cli(tmp_path, endpoint, "download", "--tasks", "cifar10", "--to", str(tmp_path / "data" / "vtde"))
    assert done.returncode == 2 and "cannot be reached" in done.stderr and seconds < BOUND_S, done.stderr
    assert not (tmp_path / "data").exists()


def test_a_model_in_the_hub_cache_loads_when_the_hub_cannot_be_reached(tmp_path, tiny_vtde, colour_rows):
    """huggingface_hub's cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-home" / "hub" / "models--org--tiny"
    shutil.copytree(tiny_vtde, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    card = helpers.colour_card(tmp_path / "cards", colour_rows, classnames=helpers.COLOUR_NAMES)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()
    done, _ = cli(tmp_path, f"http://127.0.0.1:{port}", "run", "--model", "org/tiny", "--tasks", str(card), "--workers", "0",
                  "--bootstrap", "0", "--no-cache")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded org/tiny from the local hub cache" in done.stderr
    result = json.loads((tmp_path / "results" / "org__tiny" / "colours.json").read_text())
    assert result["model"]["loaded_from"].startswith("hub cache")  # the provenance says so too
