#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv.
#
#   bash scripts/setup.sh          runtime (portrait3d + nerfstudio + the web app's gradio)
#   bash scripts/setup.sh --dev    plus test tools (pytest, ruff, playwright, chromium, the Khronos glTF validator, Blender's bpy) and Ray
#
# torch: on a machine with an NVIDIA driver the CUDA build is installed, elsewhere
# the CPU build; either way the installed version is then pinned in
# .venv/constraints.txt so that no later install (nerfstudio, ...) replaces it.
# Set TORCH_VERSION to choose another torch; PIP_INDEX_URL / PIP_EXTRA_INDEX_URL
# as usual to pick where wheels come from. Re-running is cheap: nothing is
# reinstalled unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}
say() { echo "[setup] $*" >&2; }

# 1. System libraries: open3d needs libusb at import time.
# (grep without -q: with pipefail, -q closing the pipe early would read as "missing")
if ! ldconfig -p 2>/dev/null | grep 'libusb-1.0.so.0' >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing libusb-1.0-0 (needed by open3d)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    say "open3d needs the system library libusb-1.0 (Debian/Ubuntu: sudo apt-get install libusb-1.0-0)"; exit 1
  fi
fi

# Browser tests (--dev): Debian's chromium, driven by Playwright (its own browser download cannot work offline).
if [[ $dev == 1 ]] && ! command -v chromium >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing chromium (browser tests)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "the browser tests need chromium (Debian/Ubuntu: sudo apt-get install chromium); they will be skipped"
  fi
fi

# 2. The virtual environment.
[[ -x .venv/bin/python ]] || { say "creating .venv"; "$python" -m venv .venv; }
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
stamp=.venv/.portrait3d-setup
want="$(cat pyproject.toml "$0" | sha256sum | cut -c1-16) dev=$dev"
if [[ -f $stamp && "$(cat $stamp)" == "$want" ]] || [[ -f $stamp && $dev == 0 && "$(cat $stamp)" == "${want% dev=0} dev=1" ]]; then
  say "environment up to date"
  exit 0
fi

# 3. torch first, CPU or CUDA, then pin exactly what was installed.
if ! .venv/bin/python -c "import importlib.metadata as m; m.version('torch')" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU found: installing the CUDA build of torch $torch_version"
  else
    say "no NVIDIA GPU: installing the CPU build of torch $torch_version"
  fi
  "${pip[@]}" install "torch==$torch_version"
fi
.venv/bin/python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > .venv/constraints.txt
say "pinned $(cat .venv/constraints.txt)"

# 4. The project, its NeRF extra (nerfstudio) and, with --dev, the test tools.
# --dev adds blender (bpy, Blender's own glTF/FBX importers) so the Blender import tests run in CI.
extras=nerf,web
[[ $dev == 1 ]] && extras=nerf,web,dev,blender,ray
say "installing portrait3d[$extras] (a few minutes the first time)"
"${pip[@]}" install -c .venv/constraints.txt -e ".[$extras]"

# 5. Face models: mediapipe 0.10.21 ships the face detector, face landmark and
# selfie segmentation .tflite files that preprocess runs with OpenCV's own
# TFLite reader. portrait3d never imports mediapipe itself, and its declared
# protobuf>=4.25 would break nerfstudio (protobuf<=3.20.3), so only the wheel's
# files are installed, without its dependencies.
"${pip[@]}" install --no-deps mediapipe==0.10.21

# 6. Test tool outside Python: the Khronos glTF validator (npm), if npm is there.
if [[ $dev == 1 ]]; then
  if command -v npm >/dev/null; then
    [[ -d .tools/node_modules/gltf-validator ]] || {
      say "installing gltf-validator (npm) into .tools/"
      npm install --silent --no-audit --no-fund --prefix .tools gltf-validator@2.0.0-dev.3.10 >/dev/null
    }
    # Splat clients for the browser tests (three.js + Spark, three's KHR_gaussian_splatting loader) and
    # an independent reader of the PLY and SPZ files (PlayCanvas's splat-transform).
    [[ -d .tools/node_modules/@sparkjsdev/spark && -d .tools/node_modules/@playcanvas/splat-transform ]] || {
      say "installing three, @sparkjsdev/spark, @playcanvas/splat-transform (npm) into .tools/"
      npm install --silent --no-audit --no-fund --prefix .tools three@0.187.0 @sparkjsdev/spark@2.2.0 \
        @playcanvas/splat-transform@3.7.0 >/dev/null
    }
  else
    say "npm not found: the glTF validator and splat browser tests will be skipped"
  fi
fi
echo "$want" > $stamp
say "done: use .venv/bin/portrait3d"
