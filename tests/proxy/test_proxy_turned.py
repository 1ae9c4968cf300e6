"""Turned faces: the photo's mid-line lands on the plane the texture mirrors across (one nose, not two).

The texture projects the photo through its camera onto the head and mirrors the seen half across the
face's mid-plane. A nose that lands ``d`` beside that plane is drawn twice, ``2 d`` apart: on skimage's
camera() (a profile, yaw -68) it landed 9.7 mm beside it on average (20.6 mm at worst, the chin) before
branch ``turned``, where the frontal view showed two noses and two mouths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from portrait3d.proxy.stage import ProxyOptions, proxy_head, read_inputs
from portrait3d.proxy.symmetry import midline_landing
from portrait3d.run import Run

PHOTO = Path(__file__).resolve().parents[2] / "data" / "samples" / "astronaut.jpg"


def _preprocessed(photo, out):
    from portrait3d.preprocess.pipeline import preprocess

    preprocess(photo, out)
    return read_inputs(Run(out, create=False))


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    """skimage's camera() and its mirror image, preprocessed."""
    from skimage import data

    folder = tmp_path_factory.mktemp("turned")
    image = Image.fromarray(np.repeat(data.camera()[..., None], 3, axis=-1))
    image.save(folder / "camera.png")
    ImageOps.mirror(image).save(folder / "mirror.png")
    return _preprocessed(folder / "camera.png", folder / "run"), _preprocessed(folder / "mirror.png", folder / "run_m")


def _landing(inputs):
    head = proxy_head(inputs, ProxyOptions(texture_width=512))
    size = inputs.photo.shape[0]
    vertices, faces = np.asarray(head.geometry.vertices), np.asarray(head.geometry.faces)
    args = (vertices, faces, inputs.camera, inputs.landmarks, size)
    return midline_landing(*args, head.photo_vertices, head.mirror_x), midline_landing(*args)


def test_turned_face_lands_its_midline_on_the_mirror_plane(profiles):
    for inputs in profiles:
        assert abs(inputs.camera.angles(target=(0.0, 0.0, 0.0)).yaw) > 60
        landed, unposed = _landing(inputs)
        # The profile's lower lip lies on its outline: one of the 22 may miss the head by a pixel.
        assert np.isfinite(landed).sum() >= len(landed) - 1
        # Measured (PanoHead units, 0.4 m each) when written: 0.0019 on average, 0.0104 at worst (the yaw read 61.6
        # degrees); with the second reading's yaw (67.9) 0.0016 / 0.0037. The head as it is, mirrored across its
        # left-right middle: 0.0113 on average. The frontal view looks cleaner now (no hair horn, symmetric hair).
        # On main at 23ae292: 0.0024 on average and 0.0118 / 0.0117 at worst (camera() / its mirror), the worst
        # being landmark 13, the upper lip's inner contour (the mouth's slit on the profile's outline): a change to
        # the face's shape near the mouth can trip the bound (docs/BENCHMARKS.md, thirty-third session). With a
        # turned face's nose relief at 0.7 (face_depth.TURNED_NOSE_RELIEF, thirty-fourth session): 0.0024 / 0.0023
        # on average, 0.0100 / 0.0098 at worst (landmark 13 still).
        assert np.nanmean(np.abs(landed)) < 0.004 and np.nanmax(np.abs(landed)) < 0.012
        assert np.nanmean(np.abs(unposed)) > 2 * np.nanmean(np.abs(landed))


@pytest.fixture(scope="module")
def one_sided_hair(tmp_path_factory):
    """The sample photo with a lock of her own hair hanging down one side of her head from the temple to below the
    chin (as long hair worn over one shoulder), head mask included: a frontal face whose hair is not symmetric."""
    import dataclasses

    from portrait3d.preprocess.pipeline import preprocess

    folder = tmp_path_factory.mktemp("lock")
    preprocess(PHOTO, folder / "run")
    inputs = read_inputs(Run(folder / "run", create=False))
    pts = inputs.landmarks[:468, :2]
    width = int(np.ptp(pts[:, 0]))
    top, chin = int(pts[:, 1].min()), int(pts[:, 1].max())
    outer = int(pts[:, 0].max())  # the face's side to the image's right
    columns = slice(outer - width // 10, outer - width // 10 + width // 2)
    middle = int(pts[:, 0].mean())
    hair = inputs.photo[max(0, top - width // 3) : top - width // 12, middle - width // 4 : middle + width // 4]
    rows = np.arange(top - width // 6, chin + width // 3)
    photo, mask = inputs.photo.copy(), inputs.mask.copy()
    size = mask.shape[0]
    lock = np.zeros(mask.shape, bool)
    lock[rows[0] : rows[-1] + 1, columns] = True
    lock &= np.arange(size)[None, :] > outer + 2  # beside the face, not over it
    reps = (size // hair.shape[0] + 1, size // hair.shape[1] + 1, 1)
    photo[lock] = np.tile(hair, reps)[:size, :size][lock]
    mask[lock] = 255
    return dataclasses.replace(inputs, photo=photo, mask=mask)


def test_one_sided_hair_does_not_move_the_plane_the_face_is_mirrored_across(one_sided_hair):
    # A frontal face was mirrored across the mesh's left-right middle, which is the hair's too: the eval photo of a
    # woman with her long hair over one shoulder put it 10 mm beside her nose, and her far eye came back mirrored
    # beside itself. The face's own mid-plane (where the fit placed its mid-line landmarks) is the mirror plane.
    landed, unposed_default = _landing(one_sided_hair)
    assert np.isfinite(landed).all()
    assert np.abs(landed).mean() < 0.0025  # PanoHead units (0.4 m each): 0.00024 measured, 0.0153 before
    # The mesh's own middle is pulled toward the lock: the photo's mid-line lands well beside it.
    assert np.nanmean(np.abs(unposed_default)) > 2 * np.abs(landed).mean()
