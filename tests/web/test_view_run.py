"""``portrait3d view`` on a run's own record (issue #21, items 2, 5 and 10): no code runs from the run's
files, a copied or moved run shows its own NeRF, a damaged NeRF gets one line. No server is started."""

from __future__ import annotations

import shutil

import pytest
import torch

from nerf import dataset, fit, synthetic
from nerf.field import FieldConfig
from nerf.volume import NGPVolume, VolumeConfig
from portrait3d.cli import main
from portrait3d.errors import UserError
from portrait3d.viewer import load_pipeline

TINY = VolumeConfig(
    field=FieldConfig(num_levels=2, log2_hashmap_size=10, max_resolution=32, hidden_dim=16), grid_resolution=16
)


def _fitted_run(root, value: float):
    """A run with views, transforms.json and a saved (untrained) NeRF whose weights are all ``value``."""
    cameras = synthetic.orbit_cameras(4, pitches=(0.0,))
    run = synthetic.write_scene(root, synthetic.head_mesh(subdivisions=1), cameras, size=32)
    dataset.write_transforms(run)
    config = fit.FitConfig(image_size=32, volume=TINY)
    volume = NGPVolume(TINY, "cpu")
    with torch.no_grad():
        for parameter in volume.parameters():
            parameter.fill_(value)
    fit.save(run, volume, config, step=7)
    return run.root


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    return _fitted_run(tmp_path_factory.mktemp("view") / "run", 0.25)


def _weights(pipeline) -> set[float]:
    return {round(float(p.detach().flatten()[0]), 4) for p in pipeline.model.volume.parameters()}


def test_config_yml_cannot_run_code(fitted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fitted, run)
    proof = tmp_path / "ran"
    (run / "nerf" / "config.yml").write_text(f"!!python/object/apply:os.system ['touch {proof}']\n")
    _, pipeline, step = load_pipeline(run)
    assert not proof.exists()  # the payload never ran
    assert step == 7 and _weights(pipeline) == {0.25}


def test_a_copied_or_moved_run_views_its_own_nerf(fitted, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(fitted, original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    # The copy gets other weights; the original's checkpoint goes away: the copy must show its own.
    _fitted_run(copy, 0.5)
    shutil.rmtree(original / "nerf" / "nerfstudio_models")
    config, pipeline, _ = load_pipeline(copy)
    assert _weights(pipeline) == {0.5}
    assert str(pipeline.datamanager.get_datapath()).startswith(str(copy))
    assert str(config.get_checkpoint_dir()).startswith(str(copy))
    moved = tmp_path / "moved"
    copy.rename(moved)
    _, pipeline, _ = load_pipeline(moved)
    assert _weights(pipeline) == {0.5}


@pytest.mark.parametrize(
    "damage, said",
    [
        (lambda run: shutil.rmtree(run / "nerf"), "no fitted NeRF"),
        (lambda run: shutil.rmtree(run / "nerf" / "nerfstudio_models"), "no checkpoint"),
        (lambda run: _truncate(next((run / "nerf" / "nerfstudio_models").glob("*.ckpt"))), "cannot be read"),
        (lambda run: (run / "nerf" / "volume.json").write_bytes(b"\x00\xff\xfe"), "volume.json is damaged"),
        (lambda run: (run / "nerf" / "volume.json").unlink(), "volume.json is missing"),
        (lambda run: (run / "transforms.json").write_text('{"frames": [{"file_'), "transforms.json is damaged"),
        (lambda run: _view_elsewhere(run), "outside the run"),
        (lambda run: (run / "nerf" / "config.yml").write_bytes(b"\x00\x9f binary"), None),
    ],
)
def test_view_on_a_damaged_nerf_says_one_line_to_rerun(fitted, tmp_path, capsys, damage, said):
    run = tmp_path / "run"
    shutil.copytree(fitted, run)
    damage(run)
    if said is None:  # config.yml is not read at all: a damaged one changes nothing
        assert load_pipeline(run)[2] == 7
        return
    with pytest.raises(UserError, match=said):
        load_pipeline(run)
    assert main(["view", str(run), "--port", "1"]) == UserError.exit_code  # refused before any port is bound
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and ("fit-nerf" in err or "dataset" in err), err  # what to rerun


def _view_elsewhere(run):
    import json

    document = json.loads((run / "transforms.json").read_text())
    document["frames"][0]["file_path"] = "../../../etc/hostname"
    (run / "transforms.json").write_text(json.dumps(document))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
