"""The back-view and orbit-views stages on a run folder, with tiny converted-layout weights (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from portrait3d import cameras
from portrait3d.diffusion import stages
from portrait3d.diffusion.components import random_back_view, random_portrait360
from portrait3d.errors import UserError
from portrait3d.run import Run

SIZE = 64
VIEWS = 8


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder in the converted layout: WEIGHTS/ (orbit) and WEIGHTS/back_view/."""
    root = tmp_path_factory.mktemp("weights")
    random_portrait360().save_pretrained(root)
    random_back_view().save_pretrained(root / stages.BACK_VIEW_SUBFOLDER)
    return root


def make_run(path, with_initial: bool = True) -> Run:
    run = Run(path)
    rng = np.random.default_rng(0)

    def save(relative: str) -> None:
        target = run.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(target)

    save(stages.FRONT)
    named = {f"{cameras.view_name(i)}.png": cam for i, cam in enumerate(cameras.orbit(VIEWS))}
    cameras.write_labels(run.path(stages.PROXY_CAMERAS), named)
    for name in named:
        save(f"{stages.PROXY_CONDITIONS}/{name}")
        if with_initial:
            save(f"{stages.PROXY_VIEWS}/{name}")
    return run


def options(weights, **kwargs) -> stages.OrbitOptions:
    return stages.OrbitOptions(weights=str(weights), steps=1, size=SIZE, allow_cpu=True, device="cpu", **kwargs)


def test_back_view_then_orbit_views_write_the_run_files(weights, tmp_path):
    run = make_run(tmp_path / "run")
    back_options = stages.DiffusionOptions(weights=str(weights), steps=1, size=SIZE, allow_cpu=True, device="cpu")
    info = stages.back_view(run, back_options)
    assert info["condition"] == "0004.png"  # view N/2 of the orbit is behind the head
    assert Image.open(run.path(stages.BACK)).size == (SIZE, SIZE)

    info = stages.orbit_views(run, options(weights, window=4))
    assert info["views"] == VIEWS and info["initial_noise"] is True
    for i in range(VIEWS):
        assert Image.open(run.path("views", f"{cameras.view_name(i)}.png")).size == (SIZE, SIZE)
    labels = json.loads(run.path("views", "cameras.json").read_text())["labels"]
    source = json.loads(run.path(stages.PROXY_CAMERAS).read_text())["labels"]
    assert [name for name, _ in labels] == [f"{cameras.view_name(i)}.png" for i in range(VIEWS)]
    assert np.allclose([values for _, values in labels], [values for _, values in source])
    assert run.path(stages.BACK).exists()  # the orbit stage leaves the back view in place

    again = stages.orbit_views(run, options(weights, window=4))
    assert again["skipped"] is True


def test_missing_initial_images_are_reported(weights, tmp_path):
    run = make_run(tmp_path / "run", with_initial=False)
    run.path(stages.BACK).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(run.path(stages.BACK))
    with pytest.raises(UserError, match="--initial none"):
        stages.orbit_views(run, options(weights))
    info = stages.orbit_views(run, options(weights, initial="none"))
    assert info["initial_noise"] is False


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda root: None, "weights folder not found"),
        (lambda root: (root.mkdir(), (root / "model_state-340000.th").write_bytes(b"x")), "unconverted"),
        (lambda root: (root.mkdir(), (root / "model_index.json").write_text("{}")), "expected Portrait360Pipeline"),
    ],
)
def test_bad_weights_folders_name_the_fix(tmp_path, prepare, message):
    root = tmp_path / "weights"
    prepare(root)
    with pytest.raises(UserError, match=message) as error:
        stages.load("orbit", options(root))
    assert "portrait3d convert-weights" in str(error.value) and str(root) in str(error.value)
    assert "portrait3d fetch-weights --out" in str(error.value)


def test_incomplete_weights_list_the_missing_parts(weights, tmp_path):
    import shutil

    broken = tmp_path / "weights"
    shutil.copytree(weights, broken)
    shutil.rmtree(broken / "controlnet")
    with pytest.raises(UserError, match="controlnet/config.json"):
        stages.load("orbit", options(broken))


def test_cpu_is_refused_without_allow_cpu():
    with pytest.raises(UserError, match="--allow-cpu"):
        stages.resolve_device("cpu", allow_cpu=False)


def test_cli_reports_missing_weights_in_one_line(cli, tmp_path):
    run = make_run(tmp_path / "run")
    result = cli("back-view", str(run.root), "--weights", str(tmp_path / "nowhere"), "--allow-cpu")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("portrait3d: error")]
    assert len(errors) == 1 and "convert-weights" in errors[0] and "nowhere" in errors[0]
    assert f"portrait3d fetch-weights --out {tmp_path / 'nowhere'}" in errors[0]
    assert "Traceback" not in result.stderr


def test_scheduler_option_swaps_the_sampler(weights, tmp_path):
    assert type(stages.load("orbit", options(weights)).scheduler).__name__ == "DDIMScheduler"
    assert type(stages.load("orbit", options(weights, scheduler="dpm++")).scheduler).__name__ == (
        "DPMSolverMultistepScheduler"
    )
    with pytest.raises(UserError, match="--scheduler"):
        stages.orbit_views(Run(tmp_path / "run"), options(weights, scheduler="euler"))


def test_generated_views_take_the_proxy_silhouette_as_their_mask(weights, tmp_path):
    run = make_run(tmp_path / "run")
    stages.back_view(
        run, stages.DiffusionOptions(weights=str(weights), steps=1, size=SIZE, allow_cpu=True, device="cpu")
    )
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i, name in enumerate(sorted(p.name for p in run.path(stages.PROXY_VIEWS).glob("*.png"))):
        # A different disc per camera, so a mask taken from the wrong view would show.
        disc = ((xx - SIZE / 2) ** 2 + (yy - SIZE / 2) ** 2 < (8 + 2 * i) ** 2).astype(np.uint8) * 255
        rgb = np.asarray(Image.open(run.path(stages.PROXY_VIEWS, name)).convert("RGB"))
        Image.fromarray(np.dstack([rgb, disc])).save(run.path(stages.PROXY_VIEWS, name))
    info = stages.orbit_views(run, options(weights, window=4))
    assert info["masked_views"] == VIEWS
    for i in range(VIEWS):
        view = Image.open(run.path("views", f"{cameras.view_name(i)}.png"))
        proxy = Image.open(run.path(stages.PROXY_VIEWS, f"{cameras.view_name(i)}.png"))
        assert view.mode == "RGBA"
        assert np.array_equal(np.asarray(view.getchannel("A")), np.asarray(proxy.getchannel("A")))
