#!/usr/bin/env bash
# The Python packages `make gpu-check` needs on a lent GPU machine that its image lacks
# (it has torch, torchvision, timm, h5py, numpy, matplotlib; no registry can be reached
# there), as CPython 3.12 x86-64 wheels in .whl/ (ignored by git, under 64 MiB): the
# workflow's runtime pins of requirements.txt and Snakemake's own needs. Two wheels are
# slimmed to what moclip uses: hdf5plugin keeps its LZ4 and Zstd filters (194 MB of
# filters unpacked otherwise), PuLP drops its bundled CBC solvers (Snakemake then
# schedules greedily). Run here, where PyPI answers; the device run installs with
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.whl
rm -rf "$out" && mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
platform=(--python-version 3.12 --implementation cp --only-binary=:all: --no-deps
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# The runtime pins (requirements.txt) the image lacks, then Snakemake's dependencies at
# the versions `make venv` resolves.
pins=$(grep -E '^(av|hdf5plugin|open_clip_torch|snakemake|pyyaml)==' requirements.txt)
deps="annotated-types==0.8.0 argparse-dataclass==2.0.0 conda-inject==1.3.2
ConfigArgParse==1.9.0 docutils==0.22.4 dpath==2.2.0 fastjsonschema==2.22.3 ftfy==6.3.1
gitdb==4.0.12 GitPython==3.2.1 greenlet==3.5.6 humanfriendly==10.0 immutables==0.21
jsonschema==4.26.0 jsonschema-specifications==2025.9.1 jupyter_core==5.9.1 nbformat==5.11.1
platformdirs==4.14.9 PuLP==3.3.2 pydantic==2.14.4 pydantic_core==2.50.5 referencing==0.37.0
rpds-py==2026.9.1 smart_open==7.7.1 smmap==5.0.3 snakemake-interface-common==1.23.0
snakemake-interface-executor-plugins==9.4.0 snakemake-interface-logger-plugins==2.1.0
snakemake-interface-report-plugins==1.3.0 snakemake-interface-scheduler-plugins==2.0.2
snakemake-interface-storage-plugins==4.4.1 SQLAlchemy==2.0.58 sqlmodel==0.0.37
tenacity==9.2.1 throttler==1.2.3 traitlets==5.16.1
typing-inspection==0.4.5 typing_extensions==4.16.0 tzdata==2026.6 wcwidth==0.9.4 yte==1.9.4"
# shellcheck disable=SC2086
python3 -m pip download -q "${platform[@]}" -d "$tmp" $pins $deps
# connection_pool is published as a source archive only (pure Python): build its wheel.
python3 -m pip wheel -q --no-deps -w "$tmp" connection_pool==0.0.3
slim() { # slim WHEEL PATTERN...: drop the members matching PATTERNs from WHEEL
    local whl=$1 dir="$tmp/slim"
    shift
    rm -rf "$dir" && mkdir "$dir" && (cd "$dir" && python3 -m zipfile -e "$whl" .)
    for p in "$@"; do rm -rf "${dir:?}/$p"; done
    rm "$whl" && (cd "$dir" && python3 -m zipfile -c "$whl" ./*)
}
h5=$(ls "$tmp"/hdf5plugin-*.whl)
slim "$h5" hdf5plugin/plugins/libh5{blosc,blosc2,bshuf,bzip2,fcidecomp,htj2k,sperr,sz,sz3,zfp}.so
sed -i "s/'embedded_filters': ([^)]*)/'embedded_filters': ('lz4', 'zstd')/" "$tmp/slim/hdf5plugin/_config.py"
rm "$h5" && (cd "$tmp/slim" && python3 -m zipfile -c "$h5" ./*)
slim "$(ls "$tmp"/pulp-*.whl)" "pulp/solverdir/cbc" "pulp/tests"
mv "$tmp"/*.whl "$out"/
du -sh "$out"
