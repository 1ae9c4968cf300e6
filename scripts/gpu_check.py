"""The GPU path in one command (issue 13): diffusion speed and memory, the reference pattern, the chain, the CUDA fit.

Steps (each writes its figures into ``OUT/figures.json`` as soon as it ends, so a cut-off run keeps them):

a. ``diffusion`` (a and b): SD 1.5 architecture, random weights, 32 views at 512², DDIM 50 steps, eta 0.5, guidance 3,
   windows of 8, 3D-aware initial noise, fp16 weights: seconds per view and peak memory (allocated and reserved),
   one window per UNet batch (the default), all four windows in one batch, and DPM-Solver++ at 20 steps;
b. the EMULATED compute pattern of the public DiffPortrait3D sampler on the same GPU and weights
   (``portrait3d/diffusion/reference_pattern.py``: reference UNet at batch 8 per reference every step, the
   ControlNet on both branches, separate conditional/unconditional passes, fp32 weights under fp16 autocast), on
   one window of 8 views (its windows are independent, so seconds per view do not depend on their number);
c. ``chain``: a full-size synthetic checkpoint pair in the released key layout (random weights) ->
   ``portrait3d convert-weights`` -> make-asset's own list of stages (``asset_stages``, so a stage added to the
   pipeline is checked too) after the ones ``prepare`` ran on the CPU (preprocess, proxy): back view, orbit views,
   dataset, fit-nerf on CUDA, and whatever follows; a stage that needs a package the machine lacks (the mesh export
   on the device) is reported as skipped; a contact sheet of the views comes back;
d. ``nerf``: ``scripts/bench_nerf.py --device cuda --preset standard --max-seconds 30`` on a synthetic scene rendered
   on the CPU:
   held-out PSNR at 512², fit seconds; the fitted field comes back in parts for the Chamfer figure on the CPU.

Usage::

    python scripts/gpu_check.py prepare .gpu            # on a CPU machine with open3d: run folder + NeRF scene
    python scripts/gpu_check.py run --out $OUT --prepared .gpu    # on the GPU (6.5 minutes on an H200)
    python scripts/gpu_check.py finish --out FILES --prepared .gpu   # back on the CPU: Chamfer of the CUDA fit
    python scripts/gpu_check.py run --tiny --out /tmp/check       # the same steps at tiny size on a CPU (CI);
                                                                  # c walks every stage from the photo to a GLB

What the device machine lacks (open3d, nerfstudio, nerfacc, tinycudann, xatlas, pymcubes) is not needed by the
steps it runs: the proxy renders and the NeRF scene are made by ``prepare``, the mesh and Chamfer by ``finish``;
``figures.json`` lists what was skipped and why.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

import portrait3d.diffusion  # noqa: E402, F401 - before diffusers (hides an unloadable torchvision)

SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"
STEPS = ("diffusion", "chain", "nerf")
"""Steps of ``run``: ``diffusion`` is items a and b, ``chain`` c, ``nerf`` d."""
FIELD_PART_BYTES = 15 * 2**20  # files come back from the device at most 16 MiB each
MAX_FIELD_PARTS = 4


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _tail(text: str, lines: int = 8) -> str:
    """The last lines of a command's output, without progress-bar lines."""
    kept = [line for line in text.splitlines() if line.strip() and "it/s]" not in line and "s/it]" not in line]
    return "\n".join(kept[-lines:])


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}


def cli(*args: str, timeout: float = 1800) -> float:
    """Run ``portrait3d ARGS`` (this tree's code) and return its seconds; raise with its output's end on failure."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "portrait3d", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"portrait3d {args[0]} failed ({proc.returncode}): {_tail(proc.stderr + proc.stdout)}")
    log(f"portrait3d {' '.join(args[:2])}: {seconds:.1f} s")
    return round(seconds, 1)


def script(name: str, *args: str, timeout: float = 1800) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {_tail(proc.stderr + proc.stdout)}")


def view_files(folder: Path) -> list[Path]:
    """The views ``folder/NNNN.png``, in order."""
    return sorted(folder.glob("[0-9][0-9][0-9][0-9].png"))


def contact_sheet(folder: Path, out: Path, thumb: int = 128, columns: int = 8) -> None:
    """The views ``folder/NNNN.png`` side by side (a PNG small enough to come back from the device)."""
    from PIL import Image

    files = view_files(folder)
    if not files:
        return
    rows = (len(files) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * thumb, rows * thumb), "white")
    for i, file in enumerate(files):
        with Image.open(file) as image:
            sheet.paste(image.convert("RGB").resize((thumb, thumb)), ((i % columns) * thumb, (i // columns) * thumb))
    sheet.save(out)


# --- prepare (CPU) ------------------------------------------------------------------------------------------------
def prepare(folder: Path, tiny: bool = False) -> None:
    """``folder/run``: the chain's first stages (preprocess, proxy) on the sample; ``folder/scene``: the NeRF scene."""
    from portrait3d.runner import open_run, run_stage

    folder.mkdir(parents=True, exist_ok=True)
    with open_run(folder / "run") as run:
        for stage in chain_stages(None, "cpu", tiny):
            if stage.name in PREPARED:
                run_stage(run, stage)
    log(f"prepared {folder / 'run'} ({', '.join(PREPARED)})")
    size = "64" if tiny else "512"
    script("bench_nerf.py", "--out", str(folder / "scene"), "--prepare-only", "--size", size)
    log(f"prepared {folder / 'scene'} (NeRF ground truth at {size}px)")


# --- the chain: make-asset's own list of stages ---------------------------------------------------------------------
PREPARED = ("preprocess", "proxy")
"""The chain's first stages, run by ``prepare`` on a CPU: the face models and the CPU renderer are not on the device."""


def chain_stages(weights: str | None, device: str, tiny: bool) -> list:
    """make-asset's stages for the sample photo with the diffusion generator: every stage the pipeline lists (new
    ones included) is in the chain without being named here."""
    from portrait3d.make_asset import MakeAssetOptions
    from portrait3d.pipeline import asset_stages

    options = MakeAssetOptions(
        generator="diffusion",
        weights=weights,
        device=device,
        preset="tiny" if tiny else "fast",
        views=8 if tiny else 32,
        allow_cpu=tiny,
    )
    return asset_stages(SAMPLE, options)


def walk_chain(run_root: Path, stages: list, skip: tuple[str, ...] = ()) -> dict:
    """Run each stage in order: name -> seconds and status (``ran``, ``skipped: ...`` or ``error: ...``).

    A stage that needs a package this machine lacks (ImportError: the mesh export on the device) is skipped, and so
    is a later stage whose inputs only a skipped stage writes; every other failure is an error.
    """
    from portrait3d.runner import open_run, run_stage

    report: dict = {}
    skipped = []
    with open_run(run_root) as run:
        for stage in stages:
            if stage.name in skip:
                continue
            missing = [i for i in stage.inputs if i not in stage.optional and not run.path(i).exists()]
            if missing and skipped:
                report[stage.name] = {"status": f"skipped: needs {', '.join(missing)} from {', '.join(skipped)}"}
                skipped.append(stage.name)
                continue
            start = time.perf_counter()
            try:
                run_stage(run, stage)
                status = "ran"
            except ImportError as exc:
                status = f"skipped: needs {exc.name or exc} (not on this machine)"
                skipped.append(stage.name)
            except Exception as exc:  # noqa: BLE001 - reported, and the stages after it go on where they can
                traceback.print_exc()
                status = f"error: {type(exc).__name__}: {exc}"[:500]
            report[stage.name] = {"status": status, "seconds": round(time.perf_counter() - start, 1)}
            log(f"chain {stage.name}: {status} ({report[stage.name]['seconds']} s)")
    return report


# --- run (GPU, or CPU with --tiny) ----------------------------------------------------------------------------------
class Figures:
    """``OUT/figures.json``, rewritten after every step."""

    def __init__(self, out: Path, tiny: bool) -> None:
        import torch

        self.path = out / "figures.json"
        self.data: dict = {
            "mode": "tiny" if tiny else "full",
            "machine": {
                "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "steps": {},
            "skipped": {},
        }

    def put(self, step: str, value: dict) -> None:
        self.data["steps"][step] = value
        self.path.write_text(json.dumps(self.data, indent=1))


def step_diffusion(tiny: bool, device, put=lambda value: None) -> dict:
    """a and b: the pipeline's variants (fp16 on CUDA), then the reference pattern (fp32 weights under fp16
    autocast), on one set of random weights. ``put`` gets the figures so far after each variant, so a run cut off
    by its time limit keeps the variants it finished."""
    import bench_diffusion
    import torch

    views, size, steps, window = (4, 64, 2, 2) if tiny else (32, 512, 50, 8)
    start = time.perf_counter()
    pipeline, params = bench_diffusion.build(tiny, device, torch.float32)
    result: dict = {"weights_millions": round(params / 1e6), "build_seconds": round(time.perf_counter() - start, 1)}
    if device.type == "cuda":
        pipeline.to(dtype=torch.float16)
    variants = {
        "release": dict(steps=steps),
        "batched": dict(steps=steps, views_per_batch=views),
        "dpm20": dict(steps=2 if tiny else 20, views_per_batch=views, scheduler="dpm++"),
    }
    for name, kwargs in variants.items():
        log(f"a: pipeline, {name}")
        result[name] = bench_diffusion.measure(pipeline, views, size, window=window, **kwargs)
        log(f"   {result[name]}")
        put(result)
    log("b: the reference pattern (fp32 weights, fp16 autocast), one window")
    pipeline.to(dtype=torch.float32)
    result["reference"] = bench_diffusion.measure(pipeline, window, size, steps, window, pattern="reference")
    log(f"   {result['reference']}")
    reference = result["reference"]["seconds_per_view"]
    result["speedup_vs_reference"] = {n: round(reference / result[n]["seconds_per_view"], 2) for n in variants}
    del pipeline
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def synthetic_checkpoints(folder: Path, tiny: bool, device) -> tuple[Path, Path, Path | None]:
    """The orbit and back-view files in the released key layout (random weights; fp16 at full size)."""
    import dataclasses

    import torch

    from portrait3d.diffusion import ldm_keys
    from portrait3d.diffusion.ldm_keys import CheckpointLayout, VaeLayout

    # CheckpointLayout.tiny()'s VAE downsamples by 2, the ControlNet's hint encoder by 8: it converts but cannot
    # sample. Four VAE levels (a factor of 8, as SD 1.5) make a tiny model that runs.
    vae = VaeLayout(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)
    runnable = dataclasses.replace(CheckpointLayout.tiny(), vae=vae)
    layout = runnable if tiny else CheckpointLayout()
    dtype = torch.float32 if tiny else torch.float16
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, motion, seed in (("model_state-340000.th", True, 1), ("back_head-230000.th", False, 2)):
        state = ldm_keys.synthetic_checkpoint(layout, motion=motion, seed=seed, dtype=dtype, device=device)
        torch.save({"state_dict": state}, folder / name)
        files.append(folder / name)
        del state
    layout_file = None
    if tiny:
        layout_file = folder / "layout.json"
        layout_file.write_text(json.dumps(layout.to_dict()))
    return files[0], files[1], layout_file


def blank_views(folder: Path) -> int:
    """How many views ``folder/NNNN.png`` are one flat colour: what NaN latents decode to (random weights give
    noise, never a flat image)."""
    import numpy as np
    from PIL import Image

    blank = 0
    for file in view_files(folder):
        with Image.open(file) as image:
            blank += int(np.asarray(image.convert("RGB"), dtype=np.float32).std() < 0.5)
    return blank


def step_chain(tiny: bool, device, work: Path, prepared: Path | None, out: Path, from_prepared: bool) -> dict:
    """c: synthetic checkpoint -> convert-weights -> make-asset's stages after ``PREPARED`` on this device."""
    start = time.perf_counter()
    orbit, back, layout = synthetic_checkpoints(work / "checkpoints", tiny, device)
    result: dict = {"checkpoint_seconds": round(time.perf_counter() - start, 1)}
    result["checkpoint_gib"] = round((orbit.stat().st_size + back.stat().st_size) / 2**30, 2)
    weights = work / "weights"
    convert = ["convert-weights", "--orbit", str(orbit), "--back-view", str(back), "--out", str(weights), "--force"]
    result["convert_seconds"] = cli(*convert, *(["--layout", str(layout)] if layout else []))
    for file in (orbit, back):
        file.unlink()  # gigabytes at full size
    run = work / "run"
    if run.exists():
        shutil.rmtree(run)
    if from_prepared:
        shutil.copytree(prepared / "run", run)
    stages = chain_stages(str(weights), device.type, tiny)
    result["stages"] = walk_chain(run, stages, skip=PREPARED if from_prepared else ())
    errors = {n: v["status"] for n, v in result["stages"].items() if v["status"].startswith("error")}
    result["views"] = len(view_files(run / "views"))
    result["blank_views"] = blank_views(run / "views")
    if result["views"] and result["blank_views"] == result["views"]:
        errors["orbit_views"] = "every view is one flat colour (NaN or overflow in the sampler?)"
    record = run / ".portrait3d" / "stages" / "fit-nerf.json"
    if record.is_file():
        result["fit_nerf"] = json.loads(record.read_text()).get("info")
    glb = run / "mesh" / "head.glb"
    if glb.is_file():
        result["glb_bytes"] = glb.stat().st_size
    contact_sheet(run / "views", out / "chain_views.png")
    if errors:
        result["error"] = f"chain stages failed: {errors}"[:2000]
    return result


def step_nerf(tiny: bool, work: Path, prepared: Path | None, out: Path) -> dict:
    """d: bench_nerf on the prepared scene; the fitted field comes back in fp16 parts for ``finish``."""
    import torch

    scene = prepared / "scene" if prepared else work / "scene"
    if not prepared:
        script("bench_nerf.py", "--out", str(scene), "--prepare-only", "--size", "64")
    figures = work / "nerf.json"
    args = ["--out", str(work / "fit"), "--scene", str(scene), "--json", str(figures)]
    if tiny:
        args += ["--device", "cpu", "--iterations", "30", "--max-seconds", "60", "--image-size", "64", "--size", "64"]
    else:
        # The target's own budget: >= 30 dB within 30 s of steps (33.3 dB on an H200, docs/BENCHMARKS.md).
        args += ["--device", "cuda", "--preset", "standard", "--max-seconds", "30"]
    script("bench_nerf.py", *args)
    result = json.loads(figures.read_text())
    checkpoint = sorted((work / "fit" / "nerf" / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state["pipeline"].items()}
    blob = work / "field.pt"
    torch.save({"step": state["step"], "pipeline": half}, blob)
    data = blob.read_bytes()
    parts = (len(data) + FIELD_PART_BYTES - 1) // FIELD_PART_BYTES
    if parts > MAX_FIELD_PARTS:
        result["field_parts"] = f"not returned: {len(data) / 2**20:.0f} MiB in fp16 is over {MAX_FIELD_PARTS} parts"
    else:
        for i in range(parts):
            (out / f"field.part{i}").write_bytes(data[i * FIELD_PART_BYTES : (i + 1) * FIELD_PART_BYTES])
        result["field_parts"] = parts
    result["volume_config"] = json.loads((work / "fit" / "nerf" / "volume.json").read_text())
    return result


def run_check(out: Path, tiny: bool, prepared: Path | None, only: list[str], work: Path, stages: bool = False) -> int:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if tiny else "cuda")
    if not tiny and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; pass --tiny for the CPU-size check", file=sys.stderr)
        return 2
    stages = stages or not tiny
    ready = prepared is not None and (prepared / "run").is_dir() and (prepared / "scene").is_dir()
    if stages and not ready:
        print(f"gpu_check: --prepared {prepared}: run `python scripts/gpu_check.py prepare DIR` first", file=sys.stderr)
        return 2
    figures = Figures(out, tiny)
    figures.data["skipped"] = {
        "mesh export and Chamfer": "need open3d (not on the device): `gpu_check.py finish` on the CPU",
        "reference code itself": "emulated (portrait3d/diffusion/reference_pattern.py); see docs/BENCHMARKS.md",
    }
    failed = []
    start = time.perf_counter()
    for step in STEPS:
        if step not in only:
            continue
        log(f"step {step}")
        t0 = time.perf_counter()
        try:
            if step == "diffusion":
                value = step_diffusion(tiny, device, put=lambda d: figures.put("diffusion", {**d, "partial": True}))
            elif step == "chain":
                value = step_chain(tiny, device, work / "chain", prepared, out, stages)
            else:
                value = step_nerf(tiny, work / "nerf", prepared, out)
            value["step_seconds"] = round(time.perf_counter() - t0, 1)
            if "error" in value:
                failed.append(step)
        except Exception as exc:  # noqa: BLE001 - one failed step must not hide the others' figures
            traceback.print_exc()
            value = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}
            failed.append(step)
        figures.put(step, value)
    figures.data["total_seconds"] = round(time.perf_counter() - start, 1)
    figures.put("summary", summary(figures.data["steps"]))
    print(json.dumps(figures.data["steps"]["summary"], indent=1))
    return 1 if failed else 0


def summary(steps: dict) -> dict:
    """The figures the issue asks for, against its targets."""
    out: dict = {}
    d = steps.get("diffusion", {})
    if "reference" in d:
        out["s_per_view_release"] = d["release"]["seconds_per_view"]
        out["s_per_view_batched"] = d["batched"]["seconds_per_view"]
        out["s_per_view_dpm20"] = d["dpm20"]["seconds_per_view"]
        out["s_per_view_reference_pattern"] = d["reference"]["seconds_per_view"]
        out["speedup_vs_reference"] = d["speedup_vs_reference"]
        out["peak_allocated_gib"] = {n: d[n].get("peak_allocated_gib") for n in ("release", "batched", "dpm20")}
        out["peak_reserved_gib"] = {n: d[n].get("peak_reserved_gib") for n in ("release", "batched", "dpm20")}
        out["targets"] = "s/view <= 0.4, >= 5x the reference, peak <= 10 GiB (32 views)"
    if "chain" in steps:
        out["chain"] = "error: " + steps["chain"]["error"][:300] if "error" in steps["chain"] else "ran"
        stages = steps["chain"].get("stages", {})
        out["chain_ran"] = [n for n, v in stages.items() if v["status"] == "ran"]
        out["chain_skipped"] = {n: v["status"] for n, v in stages.items() if v["status"].startswith("skipped")}
    n = steps.get("nerf", {})
    if "held_out" in n:
        out["nerf_psnr_db"] = n["held_out"]["psnr_db"]
        out["nerf_fit_seconds"] = n["fit_seconds"]
        out["nerf_targets"] = ">= 30 dB at 512^2 in <= 30 s; Chamfer <= 0.5 % (gpu_check.py finish)"
    return out


def merge(out: Path) -> int:
    """One ``OUT/figures.json`` from the per-step folders ``OUT/<step>/`` of ``scripts/gpu_device.sh`` (each step
    in its own process), with the summary; the field parts and the contact sheet move up beside it. Fewer files
    come back from the device (8 at most)."""
    merged: dict = {"steps": {}, "skipped": {}}
    for step in STEPS:
        folder = out / step
        file = folder / "figures.json"
        if not file.is_file():
            merged["steps"][step] = {"error": "no figures: the step did not start or was cut off before its end"}
            continue
        data = json.loads(file.read_text())
        merged.setdefault("mode", data.get("mode"))
        merged.setdefault("machine", data.get("machine"))
        merged["skipped"].update(data.get("skipped", {}))
        merged["steps"][step] = data["steps"].get(step, {"error": "the step wrote no figures"})
        for extra in [*folder.glob("field.part*"), *folder.glob("*.png")]:
            extra.replace(out / extra.name)
        file.unlink()
    merged["steps"]["summary"] = summary(merged["steps"])
    (out / "figures.json").write_text(json.dumps(merged, indent=1))
    print(json.dumps(merged["steps"]["summary"], indent=1))
    return 0


# --- finish (CPU) ---------------------------------------------------------------------------------------------------
def finish(out: Path, prepared: Path, work: Path) -> int:
    """Chamfer / F-score of the CUDA fit: the returned field parts + the prepared scene -> export-mesh here."""
    import bench_nerf
    import torch

    from nerf import dataset, synthetic
    from portrait3d.run import Run, atomic_write_json

    figures = json.loads((out / "figures.json").read_text())
    nerf = figures["steps"]["nerf"]
    parts = sorted(out.glob("field.part*"), key=lambda p: int(p.name.removeprefix("field.part")))
    if not parts:
        print(f"gpu_check finish: no field.part* in {out}", file=sys.stderr)
        return 2
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(prepared / "scene", work)
    run = Run(work)
    dataset.write_transforms(run)
    blob = work / "field.pt"
    blob.write_bytes(b"".join(p.read_bytes() for p in parts))
    state = torch.load(blob, map_location="cpu", weights_only=True)
    state["pipeline"] = {k: (v.float() if v.is_floating_point() else v) for k, v in state["pipeline"].items()}
    checkpoints = work / "nerf" / "nerfstudio_models"
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save({**state, "optimizers": {}, "scalers": {}}, checkpoints / f"step-{state['step']:09d}.ckpt")
    atomic_write_json(work / "nerf" / "volume.json", nerf["volume_config"])
    mesh = bench_nerf.mesh_figures(run, synthetic.head_mesh())
    print(json.dumps(mesh, indent=1))
    (Path(work) / "chamfer.json").write_text(json.dumps(mesh, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="CPU: the run folder and NeRF scene that travel to the GPU")
    p.add_argument("folder", type=Path)
    p.add_argument("--tiny", action="store_true")
    p = sub.add_parser("run", help="the check (GPU; --tiny on a CPU)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")), help="figures go here")
    p.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    p.add_argument("--prepared", type=Path, default=None, help="folder written by `prepare` (needed at full size)")
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps among {', '.join(STEPS)}")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a fresh one under /tmp)")
    p.add_argument(
        "--stages",
        action="store_true",
        help="with --tiny: the chain starts from the prepared run (as at full size), not from the photo",
    )
    p = sub.add_parser("merge", help="one OUT/figures.json from gpu_device.sh's per-step folders")
    p.add_argument("out", type=Path)
    p = sub.add_parser("finish", help="CPU: Chamfer of the CUDA fit from the returned files")
    p.add_argument("--out", type=Path, required=True, help="the folder of the returned figures.json and field parts")
    p.add_argument("--prepared", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu-check-finish"))
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.folder, args.tiny)
        return 0
    if args.command == "merge":
        return merge(args.out)
    if args.command == "finish":
        return finish(args.out, args.prepared, args.work)
    import tempfile

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in STEPS]
    if unknown:
        parser.error(f"--only: unknown step(s) {', '.join(unknown)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    return run_check(args.out, args.tiny, args.prepared, only, work, args.stages)


if __name__ == "__main__":
    sys.exit(main())
