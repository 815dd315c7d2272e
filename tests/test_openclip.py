"""open_clip models through open_clip itself: the three ways to name one and their precedence, embeddings and
metrics equal to open_clip's own path (`model.encode_image(preprocess(image))`, `model.encode_text(tokenizer(t))`)
on photo-sized images of every mode and on long, unicode and empty texts, the profile every result carries, and
the guard rails. Models are tiny open_clip `CLIP`s built from a config and saved in the `local-dir:` layout.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench.cli import main
from vtde_bench.encoders.load import load_model
from vtde_bench.errors import UserError

open_clip = pytest.importorskip("open_clip")

SIZES = [(640, 427), (427, 640), (333, 501), (97, 311)]


def photo(i: int, mode: str = "RGB") -> bytes:
    w, h = SIZES[i % len(SIZES)]
    pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.fromarray((np.arange(w)[None, :].repeat(h, 0) % 256).astype(np.uint8)))
    return helpers.encode(image, "JPEG" if mode in ("RGB", "L") else "PNG")


def reference(folder: Path):
    """open_clip's own objects for the folder: the model, its eval transform and its tokenizer."""
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{folder}")


def test_embeddings_equal_open_clips_own_path(tiny_open_clip):
    encoder = load_model(f"local-dir:{tiny_open_clip}", device="cpu")
    model, preprocess, tokenizer = reference(tiny_open_clip)
    images = [photo(i, mode) for i, mode in enumerate(["RGB", "RGB", "RGB", "RGB", "L", "P", "RGBA"])]
    ours = encoder.embed_image_inputs(encoder.image_inputs([encoder.decode(b) for b in images]))
    with torch.no_grad():
        theirs = F.normalize(model.encode_image(torch.stack([preprocess(Image.open(io.BytesIO(b))) for b in images])), dim=-1)
    assert (F.cosine_similarity(ours, theirs) >= 0.9999).all()
    texts = ["a photo of a dog.", "ein Foto von einem Hund – süß! 🐕", "", "word " * 60, "A PHOTO OF A CAT"]
    ours = encoder.encode_texts(texts)
    with torch.no_grad():
        theirs = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
    assert (F.cosine_similarity(ours, theirs) >= 0.9999).all()
    assert encoder.info.model_type == "open_clip:CLIP" and encoder.info.extra["loader"] == "open_clip"


def test_metrics_equal_a_naive_reference_from_open_clips_encoders(tmp_path, tiny_open_clip):
    names = ["red", "green", "blue"]
    rows = [(photo(i), i % 3) for i in range(9)]
    card = helpers.colour_card(tmp_path, rows, name="photos", classnames=names)
    result = evaluate(f"local-dir:{tiny_open_clip}", [str(card)], options=RunOptions(output_dir=tmp_path / "out", workers=2,
                                                                                  bootstrap=0))["photos"]
    model, preprocess, tokenizer = reference(tiny_open_clip)
    from vtde_bench.tasks import load_card

    spec = load_card(card)
    with torch.no_grad():
        images = F.normalize(model.encode_image(torch.stack([preprocess(Image.open(io.BytesIO(b))) for b, _ in rows])), dim=-1)
        prompts = [t.replace("{c}", c) for c in spec.classnames for t in spec.templates]
        text = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1).view(len(names), len(spec.templates), -1)
        classes = F.normalize(text.mean(1), dim=-1)
    scores = images @ classes.T
    labels = torch.tensor([y for _, y in rows])
    true = scores.gather(1, labels[:, None])
    hit = (scores >= true).sum(1) == 1
    assert result.metrics["acc1"] == pytest.approx(hit.float().mean().item(), abs=1e-4)
    recall = [hit[labels == c].float().mean().item() for c in range(3)]
    assert result.metrics["mean_per_class_recall"] == pytest.approx(sum(recall) / 3, abs=1e-4)
    assert result.samples.sort_values("row")["rank"].tolist() == (scores >= true).sum(1).tolist()
    profile = result.run.profile
    assert profile.images["path"] == "open_clip transform" and profile.images["resize_mode"] == "shortest"
    assert profile.texts["tokenizer"] == "SimpleTokenizer" and profile.texts["context_length"] == 16
    written = json.loads(next((tmp_path / "out").rglob("photos.json")).read_text())
    assert written["run"]["profile"]["images"]["interpolation"] == "bicubic"


def test_retrieval_equals_a_naive_reference(tmp_path, tiny_open_clip):
    rows = [(photo(i), [f"a photo number {i}", f"picture {i} of a thing"]) for i in range(6)]
    helpers.write_webdataset(tmp_path / "data", "test", rows, kind="retrieval", ext="jpg")
    card = tmp_path / "ret.toml"
    card.write_text('name = "ret"\ntype = "retrieval"\nversion = 1\n[source]\npath = "data"\nformat = "webdataset"\n'
                    'split = "test"\nnum_samples = 6\n')
    result = evaluate(f"local-dir:{tiny_open_clip}", [str(card)], options=RunOptions(output_dir=None, workers=0, bootstrap=0))["ret"]
    model, preprocess, tokenizer = reference(tiny_open_clip)
    with torch.no_grad():
        img = F.normalize(model.encode_image(torch.stack([preprocess(Image.open(io.BytesIO(b))) for b, _ in rows])), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer([c for _, caps in rows for c in caps])), dim=-1)
    owner = torch.arange(6).repeat_interleave(2)
    sims = txt @ img.T
    t2i = (sims >= sims.gather(1, owner[:, None])).sum(1) == 1
    assert result.metrics["text_to_image_recall@1"] == pytest.approx(t2i.float().mean().item(), abs=1e-4)


def test_the_precedence_of_names(tmp_path, tiny_open_clip, tiny_clip):
    from vtde_bench.encoders.checkpoints import wants_open_clip

    assert wants_open_clip(str(tiny_open_clip), None)  # a plain open_clip folder, no prefix needed
    both = tmp_path / "both"
    shutil.copytree(tiny_clip, both)
    shutil.copy(tiny_open_clip / "open_clip_config.json", both)
    shutil.copy(tiny_open_clip / "open_clip_model.safetensors", both)
    assert not wants_open_clip(str(both), None)  # both configs (laion/* repos): transformers, unless prefixed
    assert load_model(str(both), device="cpu").info.model_type == "clip"
    assert load_model(f"local-dir:{both}", device="cpu").info.model_type == "open_clip:CLIP"
    assert not wants_open_clip("ViT-B-32", None) and wants_open_clip("ViT-B-32", "laion2b_s34b_b79k")


def test_an_architecture_with_a_pretrained_file(tmp_path, tiny_open_clip):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "Tiny-Test-ViT.json").write_text(json.dumps(helpers.OPEN_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "configs")
    encoder = load_model("Tiny-Test-ViT", pretrained=str(tiny_open_clip / "open_clip_model.safetensors"), device="cpu")
    direct = load_model(f"local-dir:{tiny_open_clip}", device="cpu")
    assert encoder.info.weights_fingerprint == direct.info.weights_fingerprint
    assert encoder.info.extra["pretrained"].endswith("open_clip_model.safetensors")
    with pytest.raises(UserError, match="'Not-A-Model' is not an open_clip architecture"):
        load_model("Not-A-Model", pretrained="laion2b_s34b_b79k", device="cpu")


def test_guard_rails(tmp_path, tiny_open_clip, monkeypatch):
    empty = helpers.save_tiny_open_clip(tmp_path / "no-weights", weights=False)
    with pytest.raises(UserError, match="has no weights file .* randomly initialised"):
        load_model(f"local-dir:{empty}", device="cpu")
    (tmp_path / "bare").mkdir()
    shutil.copy(tiny_open_clip / "open_clip_model.safetensors", tmp_path / "bare")
    with pytest.raises(UserError, match=r"has no config.json \(nor open_clip_config.json\), only weights"):
        load_model(str(tmp_path / "bare"), device="cpu")
    (tmp_path / "nocfg").mkdir()
    (tmp_path / "nocfg" / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {}}))
    with pytest.raises(UserError, match="has no model_cfg"):
        load_model(f"local-dir:{tmp_path / 'nocfg'}", device="cpu")
    with pytest.raises(UserError, match="--revision applies to hub models only"):
        load_model(f"local-dir:{tiny_open_clip}", revision="main", device="cpu")
    with pytest.raises(UserError, match="holds its own .drop --pretrained."):
        load_model(f"local-dir:{tiny_open_clip}", pretrained="laion2b_s34b_b79k", device="cpu")
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r'pip install "vtde-bench\[open_clip\]"'):
        load_model(f"local-dir:{tiny_open_clip}", device="cpu")


def test_the_cli_runs_a_local_dir_model(tmp_path, tiny_open_clip, capsys):
    rows = [(photo(i), i % 2) for i in range(4)]
    card = helpers.colour_card(tmp_path, rows, name="two", classnames=["red", "green"])
    assert main(["run", "--model", f"local-dir:{tiny_open_clip}", "--tasks", str(card), "--output", str(tmp_path / "out"),
                 "--workers", "0", "--bootstrap", "0"]) == 0
    assert main(["run", "--model", f"local-dir:{tmp_path / 'missing'}", "--tasks", str(card)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_result_folders_keep_tags_and_loaders_apart():
    from vtde_bench.encoders.base import ModelInfo

    assert ModelInfo(path="ViT-B-32/laion2b_s34b_b79k", is_local=False).slug == "ViT-B-32__laion2b_s34b_b79k"
    assert ModelInfo(path="hf-hub:laion/CLIP-ViT-B-32", is_local=False).slug == "hf-hub_laion__CLIP-ViT-B-32"
    assert ModelInfo(path="laion/CLIP-ViT-B-32", is_local=False).slug == "laion__CLIP-ViT-B-32"  # transformers' copy


def test_hf_hub_models_are_downloaded_at_the_revision_and_loaded_as_a_folder(tmp_path, tiny_open_clip, monkeypatch):
    """open_clip's own hf-hub: loader takes no revision; the repo is fetched at --revision with huggingface_hub (a
    stand-in here, which records the call and returns a snapshot folder named by its commit, as the hub cache does)."""
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "snapshots" / commit
    shutil.copytree(tiny_open_clip, snapshot)
    calls = []

    def snapshot_download(repo_id, revision=None, **kwargs):
        calls.append((repo_id, revision))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    encoder = load_model("hf-hub:org/tiny-open-clip", revision="v1", device="cpu")
    assert calls == [("org/tiny-open-clip", "v1")]
    assert encoder.info.revision == "v1" and encoder.info.resolved_commit == commit and not encoder.info.is_local
    assert encoder.info.slug == "hf-hub_org__tiny-open-clip"
