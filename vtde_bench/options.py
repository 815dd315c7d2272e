"""`RunOptions`: the one home of every option of a run, its default and its help.

`vtde-bench run` makes its flags from these fields (`--batch-size` from `batch_size`), and the
library passes the one `RunOptions` object down to where each option is used; nothing else
holds a default of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vtde_bench.encoders.text import RULES as TEXT_RULES  # light: the encoders package imports nothing eagerly

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DECODERS = ("auto", "cpu", "gpu")  # where JPEGs are decoded (`imaging.decode_on_device`)
# `--decode auto` decodes JPEGs on the GPU only where its decoder (nvjpeg) gives Pillow's pixels within this many
# 8-bit levels on every probe JPEG (`imaging.device_jpeg_difference`): GPU decoders differ from libjpeg-turbo in the
# last bits (IDCT, chroma upsampling).
DEVICE_PIXEL_TOLERANCE = 2


def _option(default: Any, help: str, **flag: Any) -> Any:
    """A field with its command-line flag: `help`, and argparse's `type`, `choices`, `metavar` or `flag` (a name)."""
    return field(default=default, metadata={"help": help, **flag})


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run besides the model and the tasks."""

    revision: str | None = _option(None, "hub revision (branch, tag or commit) of --model")
    pretrained: str | None = _option(None, "open_clip weights for an architecture given as --model: a pretrained tag "
                                           "(open_clip.list_pretrained()) or a weights file", metavar="TAG_OR_FILE")
    text_normalize: str | None = _option(None, "the rule texts get before the tokenizer: none, lower, or canonical "
                                               "(big_vision's); default: the model family's own (canonical for SigLIP)",
                                         choices=TEXT_RULES)
    data_dir: Path | None = _option(None, "read task T from a local copy in DIR/T/", type=Path, metavar="DIR")
    output_dir: Path | None = _option(Path("results"), "where results go; the API's None writes nothing", type=Path, metavar="DIR")
    batch_size: int = _option(64, "images per forward pass", type=int, metavar="N")
    workers: int | None = _option(None, "input-pipeline processes (default: one per core, at most 32; 0 decodes in the main "
                                        "process)", type=int, metavar="N")
    device: str = _option("auto", "auto: CUDA, then MPS, then the CPU", choices=DEVICES)
    decode: str = _option("auto", "where JPEGs are decoded and preprocessed: cpu (the input workers), gpu (the model's "
                                  "CUDA device, nvjpeg), auto (the GPU where its decoder gives Pillow's pixels within "
                                  f"{DEVICE_PIXEL_TOLERANCE} levels on probe JPEGs, else the CPU)", choices=DECODERS)
    precision: str = _option("auto", "auto: bf16 autocast on CUDA, fp32 elsewhere", choices=PRECISIONS)
    limit: int | None = _option(None, "evaluate only the first N rows (a quick check; flagged in results)", type=int, metavar="N")
    skip_bad_images: bool = _option(False, "skip and count images that do not decode instead of stopping")
    trust_remote_code: bool = _option(False, "allow a checkpoint's own Python code to run")
    bootstrap: int = _option(1000, "resamples for the 95%% intervals; 0: none", type=int, metavar="N")
    cache: bool = _option(True, "neither read nor write the embedding cache (embeddings, and the image hashes behind "
                                "dataset fingerprints)", flag="--no-cache")
    cache_dir: Path | None = _option(None, "embedding cache folder (default: $VTDE_BENCH_CACHE or "
                                           "~/.cache/vtde-bench/embeddings)", type=Path, metavar="DIR")
    chunk_rows: int = _option(1024, "rows per cached, resumable chunk of work, shared out across ranks", type=int, metavar="N")
    overwrite: bool = _option(False, "recompute even when a result for the same weights, data and profile exists")
    shots: tuple[int, ...] | None = _option(None, "linear probes: few-shot, K images per class for each K given (1 2 4 8 16); "
                                                  "default: the card's", type=int, nargs="+", metavar="K")
    probe_seeds: int | None = _option(None, "linear probes: seeded draws per few-shot K (default: the card's, 5)",
                                      type=int, metavar="N")
    probe_features: str | None = _option(None, "linear probes: the normalised projected embeddings (default) or the "
                                               "vision tower's pooled output before the projection",
                                         choices=("projected", "pre-projection"))

    @property
    def text_chunk_rows(self) -> int:
        """Texts are cheaper than images: their cached, resumable chunks hold four times as many rows."""
        return 4 * self.chunk_rows

    @property
    def text_batch_size(self) -> int:
        """Texts are embedded in batches of at least 256: a text's forward pass is small."""
        return max(self.batch_size, 256)


def option_fields() -> list[Any]:
    """The fields of `RunOptions`, with their flag metadata, in the order `--help` lists them."""
    return list(fields(RunOptions))
