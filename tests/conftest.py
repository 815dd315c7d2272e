"""Shared fixtures: offline environment, tiny real models saved once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Keep `datasets`' arrow cache out of the user's home: each session starts clean.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="vtde-bench-tests-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)
# Likewise the embedding cache; tests that must compute pass --no-cache or their own folder.
os.environ["VTDE_BENCH_CACHE"] = tempfile.mkdtemp(prefix="vtde-bench-tests-cache-")
atexit.register(shutil.rmtree, os.environ["VTDE_BENCH_CACHE"], ignore_errors=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import helpers  # noqa: E402

COLOURS = ("red", "green", "blue", "yellow", "black", "white")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_vtde(models_dir) -> Path:
    """A saved `VisionTextDualEncoderModel` (tiny ViT + tiny BERT) with its processor."""
    return helpers.save_tiny_vtde(models_dir / "tiny-vtde")


@pytest.fixture(scope="session")
def tiny_clip(models_dir) -> Path:
    return helpers.save_tiny_clip(models_dir / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_siglip(models_dir) -> Path:
    return helpers.save_tiny_siglip(models_dir / "tiny-siglip")


@pytest.fixture(scope="session")
def colour_rows():
    """23 classification rows over six colour classes (not divisible by batch sizes on purpose)."""
    return helpers.classification_rows(23, COLOURS, seed=1)


@pytest.fixture(scope="session")
def caption_rows():
    """11 retrieval rows with 1 to 6 captions each."""
    return helpers.retrieval_rows(11, seed=2)
