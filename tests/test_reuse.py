"""When an existing result is reused, and when it must not be (issue #13 item 3).

A card whose class names or templates changed (same name and version) returned the old result
with one "reusing it" line: prompt tuning, the commonest edit, gave the old number. Every edit
that changes numbers must now make a new result; what does not (where the data lies, its layout)
must still reuse.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import helpers
from helpers import COLOUR_NAMES
from vtde_bench import evaluate

RUN = dict(workers=0, bootstrap=20)


@pytest.fixture
def world(tmp_path, tiny_vtde, colour_rows):
    """A model folder of our own (its processor files get edited) and a parquet card, run once."""
    model = tmp_path / "model"
    shutil.copytree(tiny_vtde, model)
    card = helpers.colour_card(tmp_path / "cards", colour_rows)
    out = tmp_path / "out"
    first = evaluate(str(model), [str(card)], output_dir=out, **RUN)
    assert first.skipped == []
    return model, card, out, first["colours"]


def reused(model: Path, card: Path, out: Path, **options) -> bool:
    return evaluate(str(model), [str(card)], output_dir=out, **{**RUN, **options}).skipped == ["colours"]


def test_the_same_run_is_reused_and_the_result_holds_its_profile(world):
    model, card, out, first = world
    assert reused(model, card, out)
    profile = json.loads((out / first.model.slug / "colours.json").read_text())["run"]["profile"]
    assert profile["fingerprint"] and profile["templates"] and profile["classnames"] and profile["protocol"] >= 2
    assert profile["precision"] == "fp32" and profile["bootstrap"] == 20 and profile["split"] == "test"


@pytest.mark.parametrize("edit", ["templates", "classnames", "main_metric"])
def test_an_edited_card_is_evaluated_again(world, edit):
    model, card, out, first = world
    if edit == "templates":
        (card.parent / "colours_templates.txt").write_text("a {c} thing.\n")
    elif edit == "classnames":
        (card.parent / "colours_classnames.txt").write_text("\n".join(("crimson", *COLOUR_NAMES[1:])) + "\n")
    else:
        card.write_text(card.read_text().replace("version = 1", 'version = 1\nmain_metric = "acc5"'))
    result = evaluate(str(model), [str(card)], output_dir=out, **RUN)
    assert result.skipped == [], f"an edit of {edit} reused the old result"
    assert reused(model, card, out)  # and the new result is reused in turn


@pytest.mark.parametrize("option", [{"bootstrap": 30}, {"skip_bad_images": True}, {"precision": "bf16"}, {"limit": 5}])
def test_options_that_change_numbers_are_not_reused(world, option):
    model, card, out, _ = world
    assert not reused(model, card, out, **option)


@pytest.mark.parametrize("edit", ["image processor", "tokenizer"])
def test_an_edited_processor_with_the_same_weights_is_evaluated_again(world, edit):
    model, card, out, first = world
    if edit == "image processor":
        path = model / "processor_config.json"
        config = json.loads(path.read_text())
        config["image_processor"]["image_mean"] = [0.4, 0.5, 0.6]
    else:
        path = model / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config["model_max_length"] = 8
    path.write_text(json.dumps(config))
    result = evaluate(str(model), [str(card)], output_dir=out, **RUN)
    assert result.skipped == [] and result["colours"].model.weights_fingerprint == first.model.weights_fingerprint


def test_the_same_data_in_another_layout_and_place_is_reused(world, colour_rows):
    """Where the data lies and its layout are not in the profile: the content fingerprint covers the rows."""
    model, card, out, _ = world
    elsewhere = card.parent.parent / "elsewhere"
    helpers.write_arrow(elsewhere / "colours", "test", colour_rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
    result = evaluate(str(model), [str(card)], output_dir=out, data_dir=elsewhere, **RUN)
    assert result.skipped == ["colours"] and result["colours"].dataset.layout == "parquet"  # the old result


def test_a_result_written_before_profiles_existed_is_evaluated_again(world):
    model, card, out, first = world
    path = out / first.model.slug / "colours.json"
    data = json.loads(path.read_text())
    del data["run"]["profile"]
    path.write_text(json.dumps(data))
    assert not reused(model, card, out)
