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
def tiny_open_clip(models_dir) -> Path:
    """A saved open_clip model in the `local-dir:` layout."""
    return helpers.save_tiny_open_clip(models_dir / "tiny-open-clip")


@pytest.fixture(scope="session")
def tiny_siglip(models_dir) -> Path:
    return helpers.save_tiny_siglip(models_dir / "tiny-siglip")


@pytest.fixture(scope="session")
def colour_rows():
    """23 classification rows over six colour classes (not divisible by batch sizes on purpose)."""
    return helpers.classification_rows(23, helpers.COLOUR_NAMES, seed=1)


@pytest.fixture(scope="session")
def caption_rows():
    """11 retrieval rows with 1 to 6 captions each."""
    return helpers.retrieval_rows(11, seed=2)


@pytest.fixture(scope="session")
def cards(tmp_path_factory, colour_rows, caption_rows) -> tuple[str, str]:
    """The two small tasks most tests run: colours (classification, parquet) and captions (retrieval, webdataset).
    Written once; a test that edits a card writes its own with `helpers.write_colour_cards` or `helpers.colour_card`."""
    return tuple(str(c) for c in helpers.write_colour_cards(tmp_path_factory.mktemp("colour-cards"), colour_rows, caption_rows,
                                                          helpers.COLOUR_NAMES))


@pytest.fixture
def card(tmp_path, colour_rows) -> Path:
    """The colours classification task alone, in this test's own folder."""
    return helpers.colour_card(tmp_path, colour_rows)
