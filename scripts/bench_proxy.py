"""Benchmark of the proxy stage: template build, fit + texture, and N orbit views (render + PNG write).

The run is the bundled sample photo through the real preprocess stage (or an
existing run with ``--run``). Prints a markdown table of the timings; with
``--sheet`` it also writes a contact sheet (aligned crop, mask, every view,
the photo's hair split, every view, every fourth condition image).

    python scripts/bench_proxy.py                                   # 32 views of 512², a temporary run
    python scripts/bench_proxy.py --sheet docs/contact_sheet_proxy.png
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="an existing run folder with input/ (default: preprocess the sample)")
    parser.add_argument("--photo", type=Path, default=SAMPLE, help="photo to preprocess when --run is not given")
    parser.add_argument("--views", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    args = parser.parse_args()

    from PIL import Image

    from portrait3d import progress
    from portrait3d.proxy import ProxyOptions, build_proxy, contact_sheet
    from portrait3d.proxy.template import template_head
    from portrait3d.run import Run

    progress.set_verbosity(progress.QUIET)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            from portrait3d.preprocess.pipeline import preprocess

            start = time.perf_counter()
            preprocess(args.photo, Path(tmp) / "run")
            seconds_preprocess = time.perf_counter() - start
            run = Run(Path(tmp) / "run", create=False)
        else:
            seconds_preprocess = None
            run = Run(args.run, create=False)
        options = ProxyOptions(views=args.views, size=args.size)

        start = time.perf_counter()
        template_head(options.voxel)
        seconds_template = time.perf_counter() - start
        start = time.perf_counter()
        info = build_proxy(run, options)  # the template is cached now: this is fit + texture + views
        seconds_stage = time.perf_counter() - start

        rows = [
            ("template head (marching cubes)", seconds_template),
            (f"fit + texture + {args.views} views of {args.size}² (render + PNG)", seconds_stage),
            ("proxy stage total", seconds_template + seconds_stage),
        ]
        if seconds_preprocess is not None:
            rows.insert(0, ("preprocess (sample photo)", seconds_preprocess))
            rows.append(("preprocess + proxy", seconds_preprocess + seconds_template + seconds_stage))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
        print(f"head: {info['vertices']} vertices, {info['triangles']} triangles; {info['landmarks_used']} landmarks")
        # On a shared machine wall time measures the other jobs too; CPU time of this process does not.
        cpu = time.process_time()
        print(f"CPU time of this process (all steps, imports included): {cpu:.1f} s")
        print("| step | seconds |\n| --- | --- |")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.1f} |")

        if args.sheet:
            images = [np.asarray(Image.open(run.path("input", n))) for n in ("aligned.png", "mask.png")]
            labels = ["aligned", "mask"]
            images.append(np.asarray(Image.open(run.path("proxy", "hair.png"))))
            labels.append("hair split")
            for i in range(args.views):
                images.append(np.asarray(Image.open(run.path("proxy", "views", f"{i:04d}.png"))))
                labels.append(f"view {i}")
            for i in range(0, args.views, 4):
                images.append(np.asarray(Image.open(run.path("proxy", "conditions", f"{i:04d}.png"))))
                labels.append(f"condition {i}")
            args.sheet.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(contact_sheet(images, labels, columns=7, tile=160)).save(args.sheet)
            print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
