#!/usr/bin/env bash
# The GPU figures of the speed benchmark, on a machine where only torch, transformers
# and their needs are installed and nothing can be downloaded: runs from this source
# tree on PYTHONPATH, with wheels brought along in .whl/ for what is missing.
#
#   bash scripts/gpu_benchmark.sh [OUT_DIR] [benchmark.py options...]
#
# Default options: bf16 (the default precision on CUDA), ViT-B/32 and ViT-L/14 sizes and
# the tiny model, 1,000 images, batch 256, 2 repeats. The JSON lands in OUT_DIR/gpu-benchmark.json; on CUDA,
# scripts/decode_check.py writes OUT_DIR/decode-check.json before it (GPU decoding against the workers').
#
# Bring `datasets` and what it needs beyond such a machine's packages (here, with network;
# versions as installed here, for the target's Python, e.g. 3.12):
#   for p in datasets dill multiprocess pyarrow fsspec; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       "$p==$(python3 -c "import importlib.metadata as m; print(m.version('$p'))")"
#   done
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
shift || true
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

if ! python3 -c "import datasets" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "datasets is not installed and there are no wheels in .whl/ (see this script's header)" >&2
        exit 2
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vtde-site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/vtde-site"
fi

python3 - <<'EOF'
import platform, torch, transformers, datasets, torchvision
print(f"python {platform.python_version()} | torch {torch.__version__} | torchvision {torchvision.__version__} | "
      f"transformers {transformers.__version__} | datasets {datasets.__version__} | "
      f"gpu {torch.cuda.get_device_name() if torch.cuda.is_available() else None} | cores {torch.get_num_threads()}")
EOF
if python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    # --decode gpu against the workers' decoding: pixels, embedding cosines, top-1 agreement (its own JSON, first)
    python3 scripts/decode_check.py --out "$out/decode-check.json"
fi
if [ "$#" -eq 0 ]; then
    set -- --sizes vit-b-32 vit-l-14 tiny --images 1000 --batch-size 256 --repeats 2
fi
python3 scripts/benchmark.py "$@" --out "$out/gpu-benchmark.json"
