"""Draw the built-in `shapes` demo dataset and write it as two parquet files.

Run by hand from the repository root: `python scripts/make_demo_data.py`.

The demo must be learnable by a tiny dual encoder in well under a minute on a
CPU, yet not be solvable by a shortcut: the class is the shape, while colour,
background, texture, size, position and rotation are drawn independently of
it, so a model has to look at the outline to classify. Every image gets 3-5
captions with different sentence structures so retrieval has varied text.
Everything is seeded, so rerunning the script reproduces the same bytes.

Two choices make the task learnable in that budget (found by measuring): each
shape sits inside one cell of a 3 x 3 grid whose cells are the demo ViT's
patches, and shapes are always lighter than their background.
"""

from __future__ import annotations

import io
import math
import re
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

import datasets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vtde_bench.demo import DEMO_WORDS, IMAGE_SIDE, PATCH_SIDE  # noqa: E402  (needs the repo root on sys.path)

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "arrow", "heart", "crescent")
# Shapes are bright and backgrounds dark, so an outline always shows as light on dark:
# the tiny demo ViT can then learn shapes in a minute instead of also having to learn
# contrast-polarity invariance. Both colours are still drawn independently of the class.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (235, 50, 50),
    "orange": (250, 150, 30),
    "yellow": (245, 225, 50),
    "green": (70, 210, 80),
    "cyan": (60, 220, 230),
    "blue": (80, 140, 255),
    "purple": (185, 110, 245),
    "pink": (250, 150, 205),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "gray": (70, 70, 70),
    "navy": (20, 30, 95),
    "brown": (95, 55, 25),
    "maroon": (95, 15, 35),
}
TEXTURES = ("plain", "striped", "checkered", "dotted")
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
RADII = {"small": (5.0, 6.0), "large": (6.8, 7.6)}  # in pixels
TEXTURE_CONTRAST = 0.25  # how much lighter the texture's second colour is than the background

GRID = 3  # shapes sit in one cell of a GRID x GRID layout, which names their position
CELL = PATCH_SIDE  # cell side in pixels
SIDE = GRID * CELL  # image side in pixels
assert SIDE == IMAGE_SIDE, "the demo model's image size must match the drawn images"
JITTER = 0.5  # how far, in pixels, a shape may move off its cell centre
SUPERSAMPLE = 4  # shapes are drawn this many times larger, then shrunk, for smooth edges


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _rotate(points: list[tuple[float, float]], angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in points]


def _regular(n: int, radius: float, start: float) -> list[tuple[float, float]]:
    angles = [start + 2 * math.pi * k / n for k in range(n)]
    return [(radius * math.cos(a), radius * math.sin(a)) for a in angles]


def _outline(shape: str, r: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """A polygon around (0, 0) for the shapes that are polygons, in units of pixels."""
    if shape == "square":
        return _regular(4, r, math.pi / 4)
    if shape == "diamond":  # taller than wide, so it is not just a rotated square
        return [(0, -r), (0.62 * r, 0), (0, r), (-0.62 * r, 0)]
    if shape == "triangle":
        return _regular(3, r, -math.pi / 2 + rng.choice([0.0, math.pi]))
    if shape == "star":
        return [(rad * math.cos(-math.pi / 2 + k * math.pi / 5), rad * math.sin(-math.pi / 2 + k * math.pi / 5))
                for k, rad in zip(range(10), [r, 0.42 * r] * 5)]
    if shape == "cross":
        a = 0.32 * r
        return [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a),
                (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
    if shape == "arrow":  # points right, then turned to one of four directions
        return _rotate([(-r, -0.25 * r), (0.1 * r, -0.25 * r), (0.1 * r, -0.7 * r), (r, 0), (0.1 * r, 0.7 * r),
                        (0.1 * r, 0.25 * r), (-r, 0.25 * r)], rng.integers(4) * math.pi / 2)
    if shape == "heart":
        ts = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        xs, ys = 16 * np.sin(ts) ** 3, -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts))
        return [(float(x) * r / 16.5, float(y) * r / 16.5 + 0.1 * r) for x, y in zip(xs, ys)]
    raise ValueError(shape)


def _mask(shape: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> Image.Image:
    """An anti-aliased 8-bit coverage mask of one shape."""
    k = SUPERSAMPLE
    big = Image.new("L", (SIDE * k, SIDE * k), 0)
    draw = ImageDraw.Draw(big)

    def disc(x: float, y: float, rad: float, fill: int) -> None:
        draw.ellipse([(x - rad) * k, (y - rad) * k, (x + rad) * k, (y + rad) * k], fill=fill)

    if shape == "circle":
        disc(cx, cy, r, 255)
    elif shape == "ring":
        disc(cx, cy, r, 255)
        disc(cx, cy, 0.58 * r, 0)
    elif shape == "crescent":
        angle = rng.uniform(0, 2 * math.pi)
        disc(cx, cy, r, 255)
        disc(cx + 0.5 * r * math.cos(angle), cy + 0.5 * r * math.sin(angle), 0.85 * r, 0)
    else:
        points = _rotate(_outline(shape, r, rng), rng.uniform(-0.25, 0.25))
        draw.polygon([((cx + x) * k, (cy + y) * k) for x, y in points], fill=255)
    return big.resize((SIDE, SIDE), Image.Resampling.LANCZOS)


def _background(color: tuple[int, int, int], texture: str, rng: np.random.Generator) -> Image.Image:
    base = np.array(color, dtype=np.float32)
    other = base + (255 - base) * TEXTURE_CONTRAST
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    period = int(rng.integers(4, 7))
    if texture == "plain":
        pattern = np.zeros((SIDE, SIDE), dtype=bool)
    elif texture == "striped":
        along = [xx, yy, xx + yy, xx - yy][rng.integers(4)]
        pattern = (along // (period // 2 + 1)) % 2 == 0
    elif texture == "checkered":
        pattern = ((xx // period) + (yy // period)) % 2 == 0
    else:  # dotted
        pattern = ((xx % period) < 2) & ((yy % period) < 2)
    pixels = np.where(pattern[..., None], other, base)
    return Image.fromarray(pixels.round().astype(np.uint8), "RGB")


def _position_phrase(cell_row: int, cell_col: int) -> str:
    row = ("top", "middle", "bottom")[cell_row]
    col = ("left", "middle", "right")[cell_col]
    if col == row == "middle":
        return "in the center"
    if col == "middle":
        return f"at the {row}"
    if row == "middle":
        return f"on the {col}"
    return f"in the {row} {col} corner"


Attrs = dict[str, str]
CAPTIONS: tuple[Callable[[Attrs], str], ...] = (
    lambda a: f"{_article(a['color'])} {a['color']} {a['shape']}.",
    lambda a: f"{_article(a['size'])} {a['size']} {a['color']} {a['shape']} {a['pos']}.",
    lambda a: f"a picture of {_article(a['color'])} {a['color']} {a['shape']} on a {a['texture']} background.",
    lambda a: f"there is {_article(a['size'])} {a['size']} {a['shape']} {a['pos']} of the image.",
    lambda a: f"{a['pos']}, {_article(a['color'])} {a['color']} {a['shape']}.",
    lambda a: f"the {a['shape']} is {a['color']} and {a['size']}.",
    lambda a: f"a drawing of the {a['shape']} over a {a['texture']} {a['bg']} background.",
    lambda a: f"a {a['texture']} {a['bg']} background with {_article(a['color'])} {a['color']} {a['shape']}"
              f" {a['pos']}.",
    lambda a: f"a photo of the {a['size']} {a['shape']}, colored {a['color']}.",
    lambda a: f"{a['color']} {a['shape']}, {a['size']}, {a['texture']} background.",
    lambda a: f"an image showing the {a['shape']} {a['pos']}.",
    lambda a: f"this {a['shape']} is {a['color']}, the background is {a['bg']}.",
)


def _draw_example(label: int, rng: np.random.Generator) -> tuple[bytes, list[str]]:
    shape = SHAPES[label]
    color = str(rng.choice(list(COLORS)))
    bg = str(rng.choice(list(BACKGROUNDS)))
    texture = str(rng.choice(TEXTURES))
    size = str(rng.choice(list(SIZE_WORDS)))
    r = rng.uniform(*RADII[size])
    cell_row, cell_col = rng.integers(GRID, size=2)
    cx, cy = (np.array([cell_col, cell_row]) + 0.5) * CELL + rng.uniform(-JITTER, JITTER, size=2)

    image = Image.composite(Image.new("RGB", (SIDE, SIDE), COLORS[color]), _background(BACKGROUNDS[bg], texture, rng),
                            _mask(shape, cx, cy, r, rng))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)

    n_captions = int(rng.integers(3, 6))
    captions = []
    for index in rng.choice(len(CAPTIONS), size=n_captions, replace=False):
        attrs = {"shape": shape, "color": color, "bg": bg, "texture": texture,
                 "size": str(rng.choice(SIZE_WORDS[size])), "pos": _position_phrase(cell_row, cell_col)}
        captions.append(CAPTIONS[index](attrs))
    return buffer.getvalue(), captions


def make_split(n: int, seed: int) -> datasets.Dataset:
    """`n` images, as balanced over the classes as `n` allows, in shuffled order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPES))
    images, captions = [], []
    for label in labels:
        png, texts = _draw_example(int(label), rng)
        images.append({"bytes": png, "path": None})
        captions.append(texts)
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(SHAPES)),
        "captions": datasets.Sequence(datasets.Value("string")),
    })
    columns = {"image": images, "label": labels.tolist(), "captions": captions}
    return datasets.Dataset.from_dict(columns, features=features)


def _check_vocabulary(texts: list[str]) -> None:
    """The demo tokenizer has a fixed vocabulary; a word outside it would be read as [UNK]."""
    words = {w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    missing = sorted(words - set(DEMO_WORDS))
    if missing:
        raise SystemExit(f"words missing from vtde_bench.demo.DEMO_WORDS: {missing}")


def main() -> None:
    out = REPO / "tasks" / "data" / "shapes"
    out.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 4000, 1), ("test", 500, 2)):
        split = make_split(n, seed)
        _check_vocabulary([text for texts in split["captions"] for text in texts])
        path = out / f"{name}-00000-of-00001.parquet"
        split.to_parquet(str(path))
        print(f"{path.relative_to(REPO)}: {len(split)} images, {path.stat().st_size:,} bytes")
    (REPO / "tasks" / "classnames").mkdir(parents=True, exist_ok=True)
    (REPO / "tasks" / "classnames" / "shapes.txt").write_text("".join(f"{s}\n" for s in SHAPES))
    templates = (REPO / "tasks" / "templates" / "shapes.txt").read_text().splitlines()
    _check_vocabulary([t.replace("{c}", s) for t in templates for s in SHAPES])


if __name__ == "__main__":
    main()
