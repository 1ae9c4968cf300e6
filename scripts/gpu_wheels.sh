#!/usr/bin/env bash
# Wheels that `scripts/gpu_check.py` needs on the lent H200 and that its image lacks (Python 3.12, no network
# there): downloaded here into .whl/ (ignored), carried with the device call. Pure-Python wheels only: diffusers
# (with importlib_metadata, which the image lacks) and trimesh (bench_nerf's scene and metrics modules import it).
# open3d, nerfstudio, nerfacc, xatlas and pymcubes stay behind: the steps that need them run on the CPU
# (`gpu_check.py prepare` before, `gpu_check.py finish` after).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
rm -rf .whl && mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "diffusers==0.42.1" "importlib_metadata==8.7.0" "trimesh==5.2.0"
ls -l .whl
du -sh .whl
