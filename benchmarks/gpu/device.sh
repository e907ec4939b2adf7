#!/usr/bin/env bash
# `make gpu-check` on a lent GPU machine of this workplace (the device tool), whose image has
# torch but not the workflow's packages and reaches no registry: install the wheels that
# benchmarks/gpu/wheels.sh prepared (carried as .whl/), check the imports, run the check,
# and leave under $OUT (or ./gpu-check-out) the JSON, its log and every job's log.
#   device run: bash benchmarks/gpu/device.sh   (carry: .whl)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,temperature.gpu --format=csv
python3 -c "import torch, torchvision, timm, h5py, av, open_clip, snakemake, hdf5plugin
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__,
      'timm', timm.__version__, 'h5py', h5py.__version__, 'av', av.__version__, 'open_clip', open_clip.__version__)" ||
    exit 1
python3 benchmarks/gpu_check.py --out "$out/gpu-check.json" --keep /tmp/gpu-check "$@" 2>&1 | tee "$out/gpu-check.log"
rc=${PIPESTATUS[0]}
(cd /tmp/gpu-check && find . \( -name '*.log' -o -name '*.tsv' -o -name '*.json' \) -not -path '*/demo/*' |
    tar czf - -T -) >"$out/gpu-check-logs.tgz"
exit "$rc"
