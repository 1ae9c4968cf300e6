"""Every value a user can type has a range and a one-line refusal, before anything is written (issue #21, 11)."""

from __future__ import annotations

import math

import pytest

from portrait3d import limits
from portrait3d.cli import main
from portrait3d.errors import UserError
from portrait3d.run import MARKER_DIR


def _refused(capsys, *argv: str) -> str:
    """Run the CLI in this process; the one line it printed (it must fail with a UserError's exit code)."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == UserError.exit_code, (argv, err)
    assert err.startswith("portrait3d: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def empty_run(tmp_path):
    root = tmp_path / "run"
    (root / MARKER_DIR / "stages").mkdir(parents=True)
    return str(root)


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--seed", str(2**64)], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--yaw", "1e308", "--pitch", "0"], "--yaw"),
        (["--yaw", "0", "--pitch", "1000"], "--pitch"),
        (["--yaw", "nan", "--pitch", "0"], "--yaw"),
        (["--views", "7"], "--views"),
    ],
)
def test_make_asset_refuses_out_of_range_values_before_any_folder(capsys, tmp_path, sample_photo, extra, named):
    out = tmp_path / "out"
    err = _refused(capsys, "make-asset", str(sample_photo), "--out", str(out), "--preset", "tiny", *extra)
    assert named in err
    assert not out.exists()


def test_largest_seed_is_accepted():
    assert limits.seed(2**64 - 1) == 2**64 - 1
    import torch

    torch.Generator().manual_seed(limits.SEED_MAX)  # the code can use every seed the check lets through


@pytest.mark.parametrize(
    "argv, named",
    [
        (["cameras", "--views", "100000000"], "--views"),
        (["cameras", "--pitch", "95"], "--pitch"),
        (["cameras", "--radius", "inf"], "--radius"),
        (["preprocess", "PHOTO", "--yaw", "1e308", "--pitch", "0"], "--yaw"),
        (["preprocess", "PHOTO", "--yaw", "0", "--pitch", "nan"], "--pitch"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--port", "0"], "--port"),
        (["serve", "--max-file-size", "-1"], "--max-file-size"),
        (["serve", "--max-file-size", "nan"], "--max-file-size"),
        (["view", "RUN", "--port", "70000"], "--port"),
        (["fit-nerf", "RUN", "--seed", str(2**64)], "--seed"),
        (["render-turntable", "RUN", "--frames", "100000"], "--frames"),
        (["render-turntable", "RUN", "--pitch", "nan"], "--pitch"),
        (["proxy", "RUN", "--pitch", "inf"], "--pitch"),
    ],
)
def test_commands_refuse_out_of_range_values(capsys, tmp_path, empty_run, sample_photo, argv, named):
    argv = [{"RUN": empty_run, "PHOTO": str(sample_photo)}.get(a, a) for a in argv]
    if argv[0] == "cameras":
        argv += ["--out", str(tmp_path / "cams.json")]
    if argv[0] == "preprocess":
        argv += ["--out", str(tmp_path / "pre")]
    if argv[0] == "serve":
        argv += ["--runs", str(tmp_path / "runs")]
    err = _refused(capsys, *argv)
    assert named in err
    assert not (tmp_path / "cams.json").exists() and not (tmp_path / "pre").exists()
    assert not (tmp_path / "runs").exists()


def test_web_app_refuses_what_make_asset_refuses_and_lists_no_junk_run(tmp_path, monkeypatch, sample_photo):
    from portrait3d.serve import App, ServeOptions, list_runs

    monkeypatch.delenv("PORTRAIT3D_WEIGHTS", raising=False)
    app = App(ServeOptions(runs=str(tmp_path / "runs")))
    photo = str(sample_photo)
    for views, seed, yaw, pitch, named in [
        (4, 0, None, None, "views"),
        (8, 2**64, None, None, "seed"),
        (8, -3, None, None, "seed"),
        (8, 0, math.nan, 0.0, "yaw"),
        (8, 0, 0.0, math.inf, "pitch"),
        (8, 0, 400.0, 0.0, "yaw"),
    ]:
        with pytest.raises(UserError, match=named):
            app.make_asset(photo, "proxy", "tiny", views, seed, yaw, pitch)
    assert list_runs(app.runs) == []
    assert not app.runs.exists() or not any(app.runs.iterdir())


def test_web_page_views_field_matches_make_asset(tmp_path, monkeypatch):
    from portrait3d.make_asset import MAX_VIEWS, MIN_VIEWS
    from portrait3d.serve import ServeOptions, build, prepare_runs_dir

    for name in ("GRADIO_TEMP_DIR", "MPLCONFIGDIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.setenv(name, str(tmp_path / name))  # restored afterwards: prepare_runs_dir sets them
    prepare_runs_dir(tmp_path / "runs")
    demo = build(ServeOptions(runs=str(tmp_path / "runs")))
    views = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "views")
    assert (views.minimum, views.maximum) == (MIN_VIEWS, MAX_VIEWS)


def test_serve_writes_gradio_hash_seed_under_runs_not_into_the_environment(tmp_path):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import importlib.util, os, pathlib, sys
        package = pathlib.Path(importlib.util.find_spec("gradio").origin).parent
        before = (package / "hash_seed.txt").exists()
        from portrait3d.serve import prepare_runs_dir
        prepare_runs_dir(pathlib.Path({str(tmp_path / "runs")!r}))
        import gradio, gradio.utils, gradio.processing_utils
        print(gradio.utils.HASH_SEED_PATH)
        print(before or not (package / "hash_seed.txt").exists())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    seed_path, untouched = result.stdout.strip().splitlines()[-2:]
    assert seed_path == str(tmp_path / "runs" / ".gradio" / "hash_seed.txt")
    assert (tmp_path / "runs" / ".gradio" / "hash_seed.txt").is_file()
    assert untouched == "True"  # no hash_seed.txt appeared inside the installed package
