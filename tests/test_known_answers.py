"""Known-answer runs: a model whose embeddings are built by hand, so every number is known in advance.

The model sees colours: an image embeds as the one-hot of its nearest colour,
a text as the one-hot of the colour word it contains. Images of one colour
therefore tie exactly, which checks the tie rule end to end.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import helpers
from conftest import COLOURS
from vtde_bench import RunOptions, evaluate

PALETTE = np.array([helpers.COLOURS[c] for c in COLOURS], dtype=float)


class ColourModel:
    """One-hot colour embeddings; `swap` makes it see one colour as another."""

    def __init__(self, swap: dict[str, str] | None = None):
        self.swap = swap or {}

    def encode_images(self, images):
        out = torch.zeros(len(images), len(COLOURS))
        for i, image in enumerate(images):
            mean = np.asarray(image, dtype=float).reshape(-1, 3).mean(0)
            colour = COLOURS[int(np.argmin(((PALETTE - mean) ** 2).sum(1)))]
            out[i, COLOURS.index(self.swap.get(colour, colour))] = 1
        return out

    def encode_texts(self, texts):
        out = torch.full((len(texts), len(COLOURS)), 0.01)
        for i, text in enumerate(texts):
            for j, colour in enumerate(COLOURS):
                if colour in text.replace(".", " ").split():
                    out[i, j] = 1
        return out


@pytest.fixture
def cards(tmp_path, colour_rows, caption_rows):
    helpers.write_parquet(tmp_path / "c", "test", colour_rows, kind="classification", classnames=COLOURS)
    helpers.write_parquet(tmp_path / "r", "test", caption_rows, kind="retrieval")
    cls = helpers.write_card(tmp_path / "colours.toml", name="colours", kind="classification",
                             source={"path": "c", "split": "test", "num_samples": len(colour_rows)}, classnames=COLOURS)
    ret = helpers.write_card(tmp_path / "captions.toml", name="captions", kind="retrieval",
                             source={"path": "r", "split": "test", "num_samples": len(caption_rows)})
    return str(cls), str(ret)


def options(tmp_path):
    return RunOptions(output_dir=tmp_path / "results", workers=0, batch_size=4)


def test_perfect_model_scores_one(cards, tmp_path):
    result = evaluate(ColourModel(), [cards[0]], options=options(tmp_path))["colours"]
    assert result.metrics == {"acc1": 1.0, "acc5": 1.0, "mean_per_class_recall": 1.0}
    assert set(result.per_class_recall.values()) == {1.0}


def test_confused_model_scores_exactly_what_it_confuses(cards, tmp_path, colour_rows):
    result = evaluate(ColourModel(swap={"red": "green"}), [cards[0]], options=options(tmp_path))["colours"]
    labels = [y for _, y in colour_rows]
    n_red = labels.count(COLOURS.index("red"))
    assert result.metrics["acc1"] == pytest.approx(1 - n_red / len(labels))
    assert result.per_class_recall["red"] == 0.0 and result.per_class_recall["green"] == 1.0
    assert result.metrics["mean_per_class_recall"] == pytest.approx(5 / 6)
    # Red images score the same (0) on every class but green; with ties counted against
    # the model, red's rank is 6: all six classes score at least as high as red's 0.
    samples = result.samples
    red = samples[samples["label"] == COLOURS.index("red")]
    assert (red["rank"] == 6).all()


def test_retrieval_ties_count_against_the_model(cards, tmp_path, caption_rows):
    result = evaluate(ColourModel(), [cards[1]], options=options(tmp_path))["captions"]
    colour_of = [next(c for c in COLOURS if c in caps[0].split()) for _, caps in caption_rows]
    images_per_colour = Counter(colour_of)
    captions_per_colour = Counter()
    for colour, (_, caps) in zip(colour_of, caption_rows):
        captions_per_colour[colour] += len(caps)
    # An image ties with every caption of its colour: its rank is 1 + the wrong ones among them.
    expected_image = [1 + captions_per_colour[c] - len(caps) for c, (_, caps) in zip(colour_of, caption_rows)]
    # A caption ties with every image of its colour, its own included.
    expected_text = [images_per_colour[c] for c, (_, caps) in zip(colour_of, caption_rows) for _ in caps]
    samples: pd.DataFrame = result.samples
    assert list(samples[samples["query"] == "image"]["rank"]) == expected_image
    assert list(samples[samples["query"] == "text"]["rank"]) == expected_text
    for k in (1, 5, 10):
        assert result.metrics[f"image_to_text_recall@{k}"] == pytest.approx(np.mean([r <= k for r in expected_image]))
        assert result.metrics[f"text_to_image_recall@{k}"] == pytest.approx(np.mean([r <= k for r in expected_text]))


def test_api_results_convert_to_dataframe(cards, tmp_path):
    results = evaluate(ColourModel(), list(cards), options=options(tmp_path))
    frame = results.to_dataframe()
    assert set(frame["task"]) == {"colours", "captions"}
    assert frame[(frame["task"] == "colours") & frame["main"]]["metric"].tolist() == ["acc1"]
    assert len(results.paths) == 2 and all(p.is_file() for p in results.paths.values())


def test_classes_sharing_a_name_keep_one_recall_each_and_compare_pairs_them(tmp_path, colour_rows, capsys):
    """CLIP's ImageNet names repeat ('missile', 'sunglasses'): keyed by name alone, their recalls collided
    and `compare --paired` indexed past the end of a 998-class array."""
    from vtde_bench.cli import main
    from vtde_bench.evaluators import class_keys

    names = ("red", "green", "blue", "yellow", "black", "red")
    assert class_keys(names) == ["red (0)", "green", "blue", "yellow", "black", "red (5)"]
    helpers.write_parquet(tmp_path / "c", "test", colour_rows, kind="classification", classnames=COLOURS)
    card = helpers.write_card(tmp_path / "twins.toml", name="twins", kind="classification",
                              source={"path": "c", "split": "test", "num_samples": len(colour_rows)}, classnames=names)
    base = evaluate(ColourModel(), [str(card)], output_dir=tmp_path / "base", workers=0)["twins"]
    evaluate(ColourModel(swap={"blue": "green"}), [str(card)], output_dir=tmp_path / "cand", workers=0)
    assert len(base.per_class_recall) == len(names)
    assert base.per_class_recall["green"] == 1.0 and base.per_class_recall["red (5)"] == 0.0  # white images, prompts say red
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "cand"), "--baseline", str(tmp_path / "base"), "--paired"]) == 1
    assert "regressed" in capsys.readouterr().out.lower()


def test_two_instances_of_a_model_class_without_fingerprint_are_never_mistaken_for_each_other(cards, tmp_path):
    """Nothing identifies such an object, so its results are never reused for another instance."""
    first = evaluate(ColourModel(), [cards[0]], options=options(tmp_path))
    second = evaluate(ColourModel(swap={"red": "green"}), [cards[0]], options=options(tmp_path))
    assert second.skipped == [] and second["colours"].metrics["acc1"] < first["colours"].metrics["acc1"] == 1.0
    assert first["colours"].model["weights_fingerprint"] is None


def test_class_embeddings_average_normalised_prompt_embeddings_then_renormalise():
    """CLIP's prompt ensembling, against a hand computation with prompt vectors of different lengths and directions."""
    from vtde_bench.evaluators import EmbedOptions, class_embeddings
    from vtde_bench.models import as_dual_encoder
    from vtde_bench.progress import NullProgress

    classnames = ("cat", "dog", "bird")
    templates = ("a {c}.", "two {c}s {not a field}", "a big {c}!")
    width = len(classnames) + len(templates)

    def vector(text: str) -> np.ndarray:
        v = np.zeros(width)
        if not any(name in text for name in classnames):  # the adapter's probe text
            return v + 1.0
        c = next(j for j, name in enumerate(classnames) if name in text)
        k = next(k for k, t in enumerate(templates) if t.replace("{c}", classnames[c]) == text)
        v[c], v[len(classnames) + k] = k + 1.0, 1.0  # template k stretches the class axis by k + 1
        return v

    class Prompts:
        def encode_images(self, images):
            return torch.ones(len(images), width)

        def encode_texts(self, texts):
            return torch.tensor(np.stack([vector(t) for t in texts]), dtype=torch.float32)

    got = class_embeddings(as_dual_encoder(Prompts()), classnames, templates, EmbedOptions(cache=None), NullProgress())
    for c, name in enumerate(classnames):
        prompts = [vector(t.replace("{c}", name)) for t in templates]
        mean = np.mean([p / np.linalg.norm(p) for p in prompts], axis=0)
        np.testing.assert_allclose(got[c].numpy(), mean / np.linalg.norm(mean), atol=1e-6)
        raw = np.mean(prompts, axis=0)
        assert not np.allclose(got[c].numpy(), raw / np.linalg.norm(raw), atol=1e-3)  # averaging raw vectors differs
