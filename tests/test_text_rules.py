"""The text rule a model family's reference applies before its tokenizer: SigLIP's canonical text (big_vision,
open_clip's `canonicalize_text`) for transformers SigLIP checkpoints too, switchable with --text-normalize,
and recorded in the profile and the reuse key."""

from __future__ import annotations

import pytest

from vtde_bench import RunOptions, evaluate
from vtde_bench.cli import main
from vtde_bench.encoders.load import load_model
from vtde_bench.encoders.text import canonical, rule_for

TRICKY = ["A photo of a Dog_house,   at night!", "it's a {c}.", "  CAPS\tand\nlines ", "café – naïve?", "", "___"]


def test_canonical_equals_open_clips_canonicalize_text():
    open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")
    for text in TRICKY:
        assert canonical(text) == open_clip_tokenizer.canonicalize_text(text), text


def test_family_defaults_and_choices():
    assert rule_for("siglip", None) == rule_for("siglip2", None) == "canonical"
    assert rule_for("clip", None) == rule_for(None, None) == "none"
    assert rule_for("siglip", "none") == "none" and rule_for("clip", "lower") == "lower"
    with pytest.raises(ValueError):
        rule_for("clip", "upper")


def test_siglip_checkpoints_get_canonical_text_unless_told_otherwise(tiny_siglip, tiny_clip):
    siglip = load_model(str(tiny_siglip), device="cpu")
    assert siglip.text_rule == "canonical"
    assert siglip.token_ids(["A Photo, of the DOG!"]) == siglip.token_ids(["a photo of the dog"])
    assert (siglip.encode_texts(["A Photo, of the DOG!"]) == siglip.encode_texts(["a photo of the dog"])).all()
    # transformers' SigLIP tokenizer lower-cases and drops punctuation itself, but keeps '_', which big_vision reads
    # as a space (CLIP's class names: "great_white_shark"):
    assert siglip.token_ids(["a photo of the big_dog"]) == siglip.token_ids(["a photo of the big dog"])
    plain = load_model(str(tiny_siglip), device="cpu", text_normalize="none")
    assert plain.token_ids(["a photo of the big_dog"]) != plain.token_ids(["a photo of the big dog"])
    assert plain.preprocessing_fingerprint("texts") != siglip.preprocessing_fingerprint("texts")
    clip = load_model(str(tiny_clip), device="cpu")
    assert clip.text_rule == "none" and clip.describe("texts")["padding"] == "longest"
    assert siglip.describe("texts") == {"tokenizer": type(siglip.tokenizer).__name__, "context_length": 16,
                                        "padding": "max_length", "truncation": True, "text_rule": "canonical"}


def test_the_rule_is_in_the_profile_and_the_reuse_key(tmp_path, tiny_siglip, colour_rows):
    import helpers

    card = helpers.colour_card(tmp_path, colour_rows[:6])
    out = tmp_path / "out"
    first = evaluate(str(tiny_siglip), [str(card)], options=RunOptions(output_dir=out, workers=0, bootstrap=0))["colours"]
    assert first.run.profile.texts["text_rule"] == "canonical"
    other = evaluate(str(tiny_siglip), [str(card)], options=RunOptions(output_dir=out, workers=0, bootstrap=0,
                                                                       text_normalize="none"))["colours"]
    assert other.run.profile.texts["text_rule"] == "none"
    assert other.run.profile.fingerprint != first.run.profile.fingerprint  # a result of one rule never stands for the other


def test_the_flag_takes_only_known_rules(capsys):
    assert main(["run", "--model", "x", "--tasks", "cifar10", "--text-normalize", "upper"]) == 2
    assert "invalid choice: 'upper'" in capsys.readouterr().err
