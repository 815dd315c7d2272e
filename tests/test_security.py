"""Security (issue #7): a checkpoint, a task card or a dataset runs no code and writes nowhere it should not.

Each hostile input carries a payload that, if it ever ran, would create a marker file; the
tests assert the marker is never created, and (where cheap) show that the payload is real by
running it on purpose once the guard is out of the way.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch

import helpers
from helpers import COLOUR_NAMES
from helpers import ColourModel
from vtde_bench import RunOptions, evaluate
from vtde_bench.cli import main
from vtde_bench.encoders import load_model
from vtde_bench.tasks import load_card


def payload(marker: Path) -> str:
    """Python that leaves `marker` behind if it is ever executed."""
    return f"open({str(marker)!r}, 'w').write('this code ran')\n"


def run(*args: str) -> int:
    return main(["run", "--workers", "0", "--bootstrap", "0", "--no-cache", *args])


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- remote code


@pytest.fixture
def modules_cache(tmp_path, monkeypatch):
    """transformers copies trusted remote code into HF_MODULES_CACHE and imports it from there: keep that in tmp_path."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n.startswith("transformers_modules")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n.startswith("transformers_modules")]:
        del sys.modules[name]


def _remote_code_folder(tiny_vtde: Path, folder: Path, where: str, marker: Path) -> Path:
    """A real checkpoint whose config (or tokenizer config) maps an Auto class to a module in the folder."""
    shutil.copytree(tiny_vtde, folder)
    if where == "model":
        config = json.loads((folder / "config.json").read_text())
        config["model_type"] = "evil-dual-encoder"  # unknown to transformers: only the folder's code could build it
        config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "configuration_evil.py").write_text(
            payload(marker) + "from transformers import PretrainedConfig\n\n"
            "class EvilConfig(PretrainedConfig):\n    model_type = 'evil-dual-encoder'\n")
        (folder / "modeling_evil.py").write_text(payload(marker) + "class EvilModel:\n    pass\n")
    else:
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config.pop("tokenizer_class", None)
        config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", "tokenization_evil.EvilTokenizer"]}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        (folder / "tokenization_evil.py").write_text(payload(marker) + "class EvilTokenizer:\n    pass\n")
    return folder


@pytest.mark.parametrize("where", ["model", "tokenizer"])
def test_no_remote_code_without_trust_remote_code(where, tiny_vtde, card, tmp_path, capsys, modules_cache):
    """Guards a bug for the tokenizer case: its message did not mention --trust-remote-code."""
    marker = tmp_path / "REMOTE-CODE-RAN"
    folder = _remote_code_folder(tiny_vtde, tmp_path / f"remote-{where}", where, marker)
    out = tmp_path / "results"
    capsys.readouterr()
    assert run("--model", str(folder), "--tasks", str(card), "--output-dir", str(out)) == 2
    assert "rerun with --trust-remote-code if you trust it" in last_error(capsys)
    assert not marker.exists() and not out.exists()

    # The payload is real: with the flag, transformers imports the folder's module (which then fails to be a model).
    assert run("--model", str(folder), "--tasks", str(card), "--output-dir", str(out), "--trust-remote-code") != 0
    assert marker.exists()


# ----------------------------------------------------------------------------- weights formats


def test_safetensors_are_loaded_when_a_pickled_bin_is_also_there(tiny_vtde, tmp_path):
    from safetensors.torch import load_file

    other = {name: tensor + 1.0 for name, tensor in load_file(tiny_vtde / "model.safetensors").items()}
    both, bin_only = tmp_path / "both", tmp_path / "bin-only"
    for folder in (both, bin_only):
        shutil.copytree(tiny_vtde, folder)
        torch.save(other, folder / "pytorch_model.bin")
    (bin_only / "model.safetensors").unlink()

    from_safetensors = load_model(tiny_vtde, device="cpu").info.weights_fingerprint
    from_bin = load_model(bin_only, device="cpu").info.weights_fingerprint  # a plain tensor .bin loads (weights_only)
    assert from_bin != from_safetensors
    assert load_model(both, device="cpu").info.weights_fingerprint == from_safetensors


class _Payload:
    """Pickles to a call of exec(): what a hostile pytorch_model.bin holds."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


@pytest.mark.parametrize("serialisation", ["zip", "legacy"])
def test_pickled_weights_only_through_weights_only_loading(serialisation, tiny_vtde, card, tmp_path, capsys):
    marker = tmp_path / "PICKLE-RAN"
    folder = tmp_path / "hostile"
    shutil.copytree(tiny_vtde, folder)
    (folder / "model.safetensors").unlink()
    weights = folder / "pytorch_model.bin"
    torch.save({"visual_projection.weight": _Payload(payload(marker))}, weights, _use_new_zipfile_serialization=serialisation == "zip")
    out = tmp_path / "results"
    capsys.readouterr()
    assert run("--model", str(folder), "--tasks", str(card), "--output-dir", str(out)) == 2
    assert "weights failed to load" in last_error(capsys)
    assert not marker.exists() and not out.exists()

    torch.load(weights, weights_only=False)  # the payload is real: an unrestricted unpickler runs it
    assert marker.exists()


# ----------------------------------------------------------------------------- task cards


class _RecordingModel(ColourModel):
    """The known-answer colour model, remembering every text it is asked to embed."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []

    def encode_texts(self, texts):
        self.texts += list(texts)
        return super().encode_texts(texts)


def test_task_cards_execute_nothing(tmp_path, colour_rows):
    """TOML strings that look like code, and format fields in templates, are data: kept verbatim, never evaluated."""
    marker = tmp_path / "CARD-RAN"
    code = f"__import__('os').system('touch {marker}')"
    classnames = ("red", "green {c.__class__}", "blue $(touch " + str(marker) + ")", code, "{0}", "white")
    templates = ("a photo of a {c}.", "{c.__class__.__mro__} {c!r} {c} %(c)s ${c}", "{{c}} {c}")
    helpers.write_parquet(tmp_path / "data", "test", colour_rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
    path = helpers.write_card(tmp_path / "cards" / "x.toml", name="colours", kind="zeroshot_classification",
                              source={"path": "../data", "split": "test", "num_samples": len(colour_rows)},
                              classnames=classnames, templates=templates)
    path.write_text(path.read_text().replace("version = 1", f"version = 1\ndescription = {json.dumps(code)}"))
    task = load_card(path)
    assert task.description == code and task.classnames == classnames and task.templates == templates

    model = _RecordingModel()
    evaluate(model, [task], options=RunOptions(output_dir=tmp_path / "results", workers=0, bootstrap=0, cache=False))
    expected = [t.replace("{c}", name) for name in classnames for t in templates]
    assert sorted(model.texts[-len(expected):]) == sorted(expected)  # after the width probe's text
    assert "{c.__class__.__mro__} {c!r} red %(c)s $red" in model.texts  # only '{c}' is replaced, literally
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "a/b", ".hidden", ""])
def test_task_name_cannot_point_results_elsewhere(name, tiny_vtde, tmp_path, colour_rows, capsys):
    """Guards a bug: a card named '../../x' wrote its result two folders above --output-dir."""
    helpers.write_parquet(tmp_path / "data", "test", colour_rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
    path = helpers.write_card(tmp_path / "cards" / "x.toml", name="x", kind="zeroshot_classification",
                              source={"path": "../data", "split": "test", "num_samples": len(colour_rows)}, classnames=COLOUR_NAMES)
    path.write_text(path.read_text().replace('name = "x"', f"name = {json.dumps(name)}"))
    out = tmp_path / "deep" / "results"
    capsys.readouterr()
    assert run("--model", str(tiny_vtde), "--tasks", str(path), "--output-dir", str(out)) == 2
    assert "field 'name'" in last_error(capsys)
    assert not [p for p in tmp_path.rglob("*.json") if "escaped" in p.name or p.parent == tmp_path]


# ----------------------------------------------------------------------------- webdataset tar members


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("members", ["stray-files", "whole-samples"])
def test_tar_members_with_escaping_names_write_nothing_outside(members, tiny_vtde, tmp_path, caption_rows, capsys):
    """`datasets` streams tar members without extracting them; names with '..' or '/' are at most odd row keys."""
    tag = uuid.uuid4().hex[:12]
    relative, absolute = f"../../escape-{tag}", f"/tmp/abs-escape-{tag}"
    folder = tmp_path / "a" / "b" / "wds"
    helpers.write_webdataset(folder, "test", caption_rows, kind="retrieval")
    with tarfile.open(folder / "test" / "0.tar", "a") as tar:
        for i, name in enumerate((relative, absolute)):
            _add(tar, f"{name}.txt", b"a caption that should stay in its tar")
            if members == "whole-samples":
                _add(tar, f"{name}.png", caption_rows[i][0])
    with tarfile.open(folder / "test" / "0.tar") as tar:
        assert {f"{relative}.txt", f"{absolute}.txt"} <= set(tar.getnames())  # stored as named, not sanitised
    n = len(caption_rows) + 2
    card = helpers.write_card(tmp_path / "c.toml", name="c", kind="retrieval", source={"path": str(folder), "split": "test", "num_samples": n})
    out = tmp_path / "results"
    capsys.readouterr()
    code = run("--model", str(tiny_vtde), "--tasks", str(card), "--output-dir", str(out))
    if members == "stray-files":  # a caption without an image is bad input
        assert code == 2 and "escape" in last_error(capsys)
    else:  # complete samples load, keyed by their names as plain strings
        assert code == 0
        keys = set(pd.read_parquet(next(out.glob("*/c.samples.parquet")))["key"])
        assert {relative, absolute} <= keys

    roots = [tmp_path, Path(os.environ["HF_DATASETS_CACHE"]), Path(os.environ["VTDE_BENCH_CACHE"])]
    escaped = [p for root in roots for p in root.rglob(f"*{tag}*")]
    near = [folder.parent, folder.parent.parent, Path.cwd(), Path.cwd().parent, Path.cwd().parent.parent, Path("/tmp"), Path("/")]
    escaped += [p for place in near for p in place.glob(f"*{tag}*")]
    assert escaped == []
