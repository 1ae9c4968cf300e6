"""``portrait3d serve``: a local Gradio app that runs the whole job in a browser.

A job is one call of :func:`portrait3d.make_asset.make_asset` on one run folder under
``--runs``; the app adds no stage logic of its own. Jobs go through Gradio's queue one
at a time (``default_concurrency_limit=1``), so two browser tabs never write one run
at once (and ``make_asset`` holds the run folder's lock besides). A run folder is
named after the photo's content and the options, so the same photo with the same
options is the same run: sending it again resumes or skips finished stages, and a
restarted server lists the runs it finds under ``--runs``.

Gradio's own uploads and caches live in ``RUNS/.gradio`` (``GRADIO_TEMP_DIR``), and so
does matplotlib's font cache (``MPLCONFIGDIR``), so nothing is written outside ``--runs``.
The job is also callable from Python with ``gradio_client`` (``api_name="make_asset"``, see the README).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from portrait3d import limits, progress
from portrait3d.errors import UserError
from portrait3d.make_asset import MAX_VIEWS, MIN_VIEWS
from portrait3d.run import MARKER_DIR, Run, atomic_path, atomic_write_bytes, atomic_write_json, writable_folder

JOB_FILE = "job.json"
"""``RUN/job.json``: the photo's name and the options of the run (what resuming it reruns)."""
GRADIO_DIR = ".gradio"
MAX_UPLOAD_MB = 1024.0
"""The largest ``--max-file-size`` (the decoder refuses photos over 100 megapixels anyway)."""
"""Under ``--runs``: Gradio's uploads and cache (``GRADIO_TEMP_DIR``)."""
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "astronaut.jpg"


@dataclass
class ServeOptions:
    """Options of ``portrait3d serve``."""

    host: str = "127.0.0.1"
    """Address to listen on; 127.0.0.1 is this machine only."""
    port: int = 7860
    """Port of the web page."""
    runs: str = "runs"
    """Folder of the run folders (one per job); nothing is written outside it."""
    preset: str = "fast"
    """Preset offered first."""
    weights: str | None = None
    """Converted weights folder; the diffusion generator is offered only when it is set (or $PORTRAIT3D_WEIGHTS)."""
    max_file_size_mb: float = 20.0
    """Uploads larger than this are refused."""


def run_name(photo_bytes: bytes, stem: str, options: dict) -> str:
    """A run folder's name: the photo's name, then a digest of its content and the options."""
    digest = hashlib.sha256(photo_bytes + json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40].strip("-") or "photo"
    return f"{safe}-{digest}"


def _real_run(path: Path) -> bool:
    """A run folder the app made, and a real folder: no symlink (it would lead outside ``--runs``)."""
    return (
        not path.is_symlink()
        and path.is_dir()
        and not (path / MARKER_DIR).is_symlink()
        and (path / MARKER_DIR).is_dir()
        and not (path / JOB_FILE).is_symlink()
        and (path / JOB_FILE).is_file()
    )


def list_runs(runs: Path) -> list[str]:
    """Run folders under ``runs`` that the app made (newest first); symlinks are not runs."""
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if _real_run(p)]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def run_outputs(root: Path) -> dict:
    """What a finished (or partly finished) run has to show, as paths (None where missing)."""
    mesh = root / "mesh"

    def have(path: Path) -> str | None:
        return str(path) if path.is_file() and not path.is_symlink() and not mesh.is_symlink() else None

    downloads = [
        p
        for p in (mesh / "head.glb", mesh / "head.obj", mesh / "head.mtl", mesh / "head_texture.png", mesh / "head.ply")
        if have(p)
    ]
    # The splats (export-splat): the 3DGS PLY is what Gradio's 3D viewer shows as Gaussians.
    downloads += [p for p in (root / "splat" / n for n in ("head.ply", "head.spz", "head.glb")) if p.is_file()]
    return {
        "contact_sheet": have(root / "contact_sheet.png"),
        "turntable": have(root / "turntable.mp4"),
        "glb": have(mesh / "head.glb"),
        "downloads": [str(p) for p in downloads],
        "splat": have(root / "splat" / "head.ply"),
    }


def run_files(root: Path) -> list[Path]:
    """The run's own files, sorted: symlinks (to files or folders) are never followed, ``download/`` is left out."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink() and (here != root or d != "download"))
        found += [here / f for f in files if not (here / f).is_symlink() and (here / f).is_file()]
    return sorted(found)


def zip_run(root: Path) -> Path:
    """``RUN/download/NAME.zip``: the whole run folder (without the zip itself, and no symlink), written atomically.

    The zip is rewritten only when the run's files changed (their names, sizes and times are its
    comment): the same run state gives the same bytes, which Gradio caches once.
    """
    target = root / "download" / f"{root.name}.zip"
    target.parent.mkdir(exist_ok=True)
    files = run_files(root)
    state = hashlib.sha256(
        json.dumps([[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]).encode()
    ).hexdigest()
    if target.is_file() and not target.is_symlink():
        try:
            with zipfile.ZipFile(target) as existing:
                if existing.comment.decode() == state:
                    return target
        except (OSError, zipfile.BadZipFile, UnicodeDecodeError):
            pass  # a damaged zip is rewritten
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, Path(root.name) / path.relative_to(root))
        archive.comment = state.encode()
    return target


def prune_gradio_cache(gradio_dir: Path) -> int:
    """Keep the newest of Gradio's cached copies of each run's zip; returns how many older copies were removed.

    Gradio copies every file a job returns into ``RUNS/.gradio/<hash>/NAME``; a run's zip changes as
    the run does, so each resume would leave another copy (tens of MB) there for good.
    """
    copies: dict[str, list[Path]] = {}
    if not gradio_dir.is_dir():
        return 0
    for entry in gradio_dir.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            continue
        inside = list(entry.iterdir())
        if len(inside) == 1 and inside[0].suffix == ".zip" and inside[0].is_file() and not inside[0].is_symlink():
            copies.setdefault(inside[0].name, []).append(inside[0])
    removed = 0
    for found in copies.values():
        found.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in found[1:]:
            old.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                old.parent.rmdir()
            removed += 1
    return removed


class ProgressMap:
    """Turn :mod:`portrait3d.progress` events into calls of a ``gr.Progress`` (fraction, description)."""

    def __init__(self, report, stages: tuple[str, ...]) -> None:
        """``stages``: the names of the job's stages in the list's order (``asset_stages``)."""
        self.report, self.stages, self.index = report, stages, 0
        self.lines: list[str] = []

    def __call__(self, event: progress.Event) -> None:
        index = self.stages.index(event.stage) if event.stage in self.stages else None
        if event.kind == "stage-start" and index is not None:
            # A stage that runs beside the next ones (the turntable beside the splats) starts before them and
            # ends during them: the bar follows the latest stage in the list, and only its steps.
            self.index = max(self.index, index)
        n = len(self.stages)
        label = f"{self.index + 1}/{n} {event.stage or 'starting'}"
        if event.kind == "stage-start" and index == self.index:
            self.report(self.index / n, desc=label)
        elif event.kind == "step" and event.total and index in (None, self.index):
            self.report((self.index + event.done / event.total) / n, desc=f"{label}: {event.message}")
        elif event.kind == "info":
            self.lines.append(event.message)


class App:
    """The jobs behind the page: start or resume a run, show a run."""

    def __init__(self, options: ServeOptions) -> None:
        from portrait3d.make_asset import WEIGHTS_ENV

        self.options = options
        self.runs = Path(options.runs).resolve()
        self.weights = options.weights or os.environ.get(WEIGHTS_ENV)
        self.generators = ["proxy", "diffusion"] if self.weights else ["proxy"]

    def make_asset(self, photo, generator, preset, views, seed, yaw, pitch, report=None) -> tuple:
        """The job: photo (a path) and options in; status, contact sheet, turntable, GLB, downloads out."""
        from portrait3d.preprocess.decode import read_photo

        if not photo:
            raise UserError("no photo: drop one on the page or pick the example")
        if generator not in self.generators:
            raise UserError(f"generator {generator!r} is not available here (choose one of {self.generators})")
        if (yaw is None) != (pitch is None):
            raise UserError("yaw and pitch go together (leave both empty for the automatic estimate)")
        views, seed = limits.integer("views", views, MIN_VIEWS, MAX_VIEWS), limits.seed(seed, "seed")
        if yaw is not None:
            yaw = limits.number("yaw", yaw, *limits.YAW_RANGE, " degrees")
            pitch = limits.number("pitch", pitch, *limits.PITCH_RANGE, " degrees")
        # make-asset's own checks too, before a run folder exists (a refused job leaves no run listed).
        self._options(
            {"generator": generator, "preset": preset, "views": views, "seed": seed, "yaw": yaw, "pitch": pitch}
        ).validate()
        source = Path(photo)
        read_photo(source)  # the CLI's checks and one-line message, before any run folder exists
        job = {"generator": generator, "preset": preset, "views": views, "seed": seed, "yaw": yaw, "pitch": pitch}
        data = source.read_bytes()
        root = self.runs / run_name(data, source.stem, job)
        if root.is_symlink():
            raise UserError(f"{root}: is a symlink, not a run folder; remove it from {self.runs}")
        Run(root)
        photo_path = root / f"photo{source.suffix.lower()}"
        if not photo_path.is_file():
            atomic_write_bytes(photo_path, data)
        atomic_write_json(root / JOB_FILE, {"photo": source.name, **job})
        return self._run(root, photo_path, job, report)

    def resume(self, name: str, report=None) -> tuple:
        """Run an earlier job again: finished stages are skipped, an interrupted one is redone."""
        root = self._run_root(name)
        job = json.loads((root / JOB_FILE).read_text())
        photo = next(root.glob("photo.*"), None)
        if photo is None:
            raise UserError(f"{name}: the run has no photo to resume from")
        job.pop("photo", None)
        return self._run(root, photo, job, report)

    def show(self, name: str) -> tuple:
        """An earlier run's results, as they are (nothing is run)."""
        root = self._run_root(name)
        return self._outputs(root, f"{name}: {'finished' if (root / 'report.json').is_file() else 'not finished'}")

    def rig(self, name: str) -> str:
        """The avatar of an earlier run (``export-mesh --target avatar``: blendshapes, visemes, bones; made
        once), shown in a three.js page with expression sliders: HTML of an iframe."""
        from portrait3d.pipeline import target_stages
        from portrait3d.presets import PRESETS
        from portrait3d.rig.web import page_folder
        from portrait3d.runner import open_run, run_stage

        root = self._run_root(name)
        if not (root / "avatar" / "head.glb").is_file():  # rigged already (make-asset --target avatar): show it
            preset = json.loads((root / JOB_FILE).read_text()).get("preset", self.options.preset)
            with open_run(root, create=False, wait=True) as run:
                for stage in target_stages(PRESETS[preset].export, "avatar"):
                    run_stage(run, stage)
        page = page_folder(root / "web" / "avatar", root / "avatar" / "head.glb")
        return (
            f'<iframe src="/gradio_api/file={page}" style="width:100%;height:540px;border:0" '
            f'title="avatar of {name}"></iframe>'
        )

    def _run_root(self, name: str | None) -> Path:
        if not name or name not in list_runs(self.runs):
            raise UserError(f"no run named {name!r} under {self.runs}")
        return self.runs / name  # list_runs has only real folders: a symlinked run is never resumed

    def _options(self, job: dict):
        from portrait3d.make_asset import MakeAssetOptions

        options = MakeAssetOptions(
            generator=job["generator"],
            weights=self.weights,
            views=job["views"],
            preset=job["preset"],
            seed=job["seed"],
            yaw=job.get("yaw"),
            pitch=job.get("pitch"),
        )
        if "wait" in {f.name for f in dataclasses.fields(MakeAssetOptions)}:
            options = dataclasses.replace(options, wait=True)  # queued behind another front end's job on this run
        return options

    def _run(self, root: Path, photo: Path, job: dict, report) -> tuple:
        from portrait3d.make_asset import make_asset
        from portrait3d.pipeline import asset_stages

        options = self._options(job)
        stages = (*(stage.name for stage in asset_stages(photo, options)), "report")
        listener = ProgressMap(report or (lambda *a, **k: None), stages)
        prune_gradio_cache(self.runs / GRADIO_DIR)  # Gradio has cached the previous job's files by now
        with progress.listen(listener):
            result = make_asset(photo, root, options)
        zip_run(root)
        return self._outputs(root, f"{root.name}: done in {result['seconds_total']:.0f} s")

    def _outputs(self, root: Path, status: str) -> tuple:
        out = run_outputs(root)
        archive = root / "download" / f"{root.name}.zip"
        downloads = out["downloads"] + ([str(archive)] if archive.is_file() and not archive.is_symlink() else [])
        return status, out["contact_sheet"], out["turntable"], out["glb"], downloads or None, out["splat"]


def build(options: ServeOptions):
    """The Gradio Blocks of the app (not launched)."""
    import gradio as gr

    from portrait3d.presets import PRESETS

    app = App(options)

    def as_gradio_error(fn):
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as exc:
                raise gr.Error(str(exc), duration=None) from None

        return wrapped

    @as_gradio_error
    def make_asset_job(photo, generator, preset, views, seed, manual, yaw, pitch, report=gr.Progress()):  # noqa: B008
        if not manual:
            yaw = pitch = None
        return app.make_asset(photo, generator, preset, views, seed, yaw, pitch, report)

    @as_gradio_error
    def resume_job(name, report=gr.Progress()):  # noqa: B008
        return app.resume(name, report)

    @as_gradio_error
    def show_run(name):
        return app.show(name)

    def rig_run(name):
        return as_gradio_error(app.rig)(name)

    def refresh():
        return gr.update(choices=list_runs(app.runs))

    with gr.Blocks(title="portrait3d") as demo:
        gr.Markdown(
            "# portrait3d\nOne portrait photo in: 360-degree views, a NeRF and a textured 3D head (GLB, OBJ, PLY) "
            f"out. Runs are kept in `{app.runs}`."
        )
        with gr.Row():
            with gr.Column(scale=1):
                # A file, not gr.Image: gr.Image decodes uploads itself and would answer a bad photo with
                # its own error instead of the one-line message of the CLI.
                photo = gr.File(type="filepath", file_types=["image"], label="Photo", elem_id="photo")
                gr.Examples([[str(SAMPLE)]], inputs=[photo], label="Sample (public domain)")
                with gr.Accordion("Options", open=False):
                    generator = gr.Radio(app.generators, value="proxy", label="Generator")
                    preset = gr.Dropdown(list(PRESETS), value=options.preset, label="Preset", elem_id="preset")
                    views = gr.Number(
                        32, label="Views", precision=0, minimum=MIN_VIEWS, maximum=MAX_VIEWS, elem_id="views"
                    )
                    seed = gr.Number(0, label="Seed", precision=0)
                    manual = gr.Checkbox(False, label="Set the camera by hand (for faces the detector misses)")
                    yaw = gr.Slider(-180, 180, 0, step=1, label="Yaw (degrees)")
                    pitch = gr.Slider(-60, 60, 0, step=1, label="Pitch (degrees)")
                start = gr.Button("Make the 3D head", variant="primary", elem_id="start")
                with gr.Accordion("Earlier runs", open=False):
                    # Custom values: the API names runs that appeared after this page was built.
                    earlier = gr.Dropdown(list_runs(app.runs), label="Run", elem_id="earlier", allow_custom_value=True)
                    with gr.Row():
                        show = gr.Button("Show")
                        resume = gr.Button("Resume")
                        again = gr.Button("Refresh list")
            with gr.Column(scale=2):
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                with gr.Row():
                    model = gr.Model3D(label="3D head (GLB)", elem_id="model", height=420)
                    splat = gr.Model3D(
                        label="Real-time splat (3D Gaussians, splat/head.ply)", elem_id="splat", height=420
                    )
                with gr.Row():
                    sheet = gr.Image(label="Contact sheet", interactive=False, height=320)
                    turntable = gr.Video(label="Turntable", interactive=False, height=320)
                files = gr.File(
                    label="Downloads: GLB, OBJ + MTL + texture, PLY; splat PLY, SPZ, GLB; whole run (zip)",
                    elem_id="downloads",
                )
                with gr.Accordion("Avatar: blink, smile, talk (the earlier run picked above)", open=False):
                    make_avatar = gr.Button("Rig it and show the avatar", elem_id="avatar-button")
                    avatar = gr.HTML(elem_id="avatar")
        outputs = [status, sheet, turntable, model, files, splat]
        make_avatar.click(rig_run, [earlier], avatar, api_name="avatar")
        start.click(
            make_asset_job, [photo, generator, preset, views, seed, manual, yaw, pitch], outputs, api_name="make_asset"
        ).then(refresh, None, earlier)
        resume.click(resume_job, [earlier], outputs, api_name="resume")
        show.click(show_run, [earlier], outputs, api_name="show")
        again.click(refresh, None, earlier, api_name=False)
        demo.load(refresh, None, earlier, api_name=False)
    return demo


def prepare_runs_dir(runs: Path) -> Path:
    """Create ``runs`` and point Gradio's uploads and cache into it (before gradio is imported)."""
    writable_folder(runs, "runs folder")
    gradio_dir = runs / GRADIO_DIR
    gradio_dir.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_dir)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # matplotlib (imported by the stages' libraries) writes a font cache to ~/.cache unless told otherwise.
    os.environ.setdefault("MPLCONFIGDIR", str(gradio_dir / "matplotlib"))
    # Gradio caches examples under the working directory unless told otherwise.
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(gradio_dir / "examples")
    _keep_hash_seed_in(gradio_dir / HASH_SEED_FILE)
    return gradio_dir


HASH_SEED_FILE = "hash_seed.txt"


class _HashSeedRedirect(importlib.abc.MetaPathFinder):
    """Points ``gradio.utils.HASH_SEED_PATH`` at ``path`` as the module loads.

    Gradio writes a random seed into its own package folder (a virtual environment, maybe
    read-only or shared) the first time it is imported; it reads the path right after
    ``gradio.utils`` runs, so the path is changed between the two.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def find_spec(self, name, path, target=None):
        if name != "gradio.utils":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module, seed_path = spec.loader.exec_module, str(self.path)

        def exec_module(module) -> None:
            run_module(module)
            module.HASH_SEED_PATH = seed_path

        spec.loader.exec_module = exec_module
        return spec


def _keep_hash_seed_in(path: Path) -> None:
    """Gradio's ``hash_seed.txt`` at ``path`` instead of inside the installed gradio package."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _HashSeedRedirect)]
    loaded = sys.modules.get("gradio.utils")
    if loaded is not None:  # imported already (tests): its seed is read, later readers get ours
        loaded.HASH_SEED_PATH = str(path)
    else:
        sys.meta_path.insert(0, _HashSeedRedirect(path))


def avatar_paths() -> list[str]:
    """three.js, which the avatar page loads (where ``scripts/setup.sh --dev`` installed it)."""
    from portrait3d.rig.web import three_folder

    three = three_folder()
    return [str(three.resolve())] if three else []


def serve(options: ServeOptions, block: bool = True):
    """Launch the app; returns the Gradio app (with ``block=False``, for tests)."""
    runs = Path(options.runs).resolve()
    prepare_runs_dir(runs)
    prune_gradio_cache(runs / GRADIO_DIR)
    tempfile.tempdir = str(runs / GRADIO_DIR)  # anything Gradio puts in the system temp folder stays under --runs
    demo = build(options)
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name=options.host,
        server_port=options.port,
        max_file_size=f"{options.max_file_size_mb:g}mb",
        allowed_paths=[str(runs), *avatar_paths()],
        prevent_thread_lock=True,
        show_error=True,
        quiet=True,
    )
    progress.info(f"portrait3d web app: http://{options.host}:{options.port}  (runs in {runs}; Ctrl-C to stop)")
    if block:
        demo.block_thread()
    return demo
