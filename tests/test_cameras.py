"""Camera conventions: PanoHead labels, angles, orbits, nerfstudio conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from portrait3d import cameras as C


def _labelled_cameras(reference_labels):
    return [(name, C.Camera.from_label(values)) for name, values in reference_labels["labels"]]


def test_reference_labels_rebuilt_from_recovered_angles(reference_labels):
    for name, cam in _labelled_cameras(reference_labels):
        angles = cam.angles()
        rebuilt = C.camera_from_angle_record(angles)
        # Centre, optical axis and intrinsics: the label itself, within 1e-3.
        np.testing.assert_allclose(rebuilt.position, cam.position, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(rebuilt.forward, cam.forward, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(rebuilt.intrinsics, cam.intrinsics, atol=1e-3, err_msg=name)
        # The whole matrix: the label's nearest rotation, within 1e-3 (the raw
        # label's x and y axes are sheared by its 3DDFA fit; see Camera.orthonormalised).
        np.testing.assert_allclose(rebuilt.cam2world, cam.orthonormalised().cam2world, atol=1e-3, err_msg=name)
        shear = abs(float(cam.cam2world[:3, 0] @ cam.cam2world[:3, 1]))
        assert np.abs(rebuilt.cam2world - cam.cam2world).max() <= shear / 2 + 1e-3
        assert abs(angles.radius - 2.7) < 0.01
        assert np.linalg.norm(angles.target) < 1e-3


def test_reference_label_angles_are_plausible(reference_labels):
    angles = {name: cam.angles() for name, cam in _labelled_cameras(reference_labels)}
    # 000006 is turned about 30 degrees toward +x; the others are near frontal, slightly above.
    assert 25 < angles["000006.png"].yaw < 35
    assert abs(angles["000000.png"].yaw) < 5 and abs(angles["000009.png"].yaw) < 5
    assert all(0 < a.pitch < 15 for a in angles.values())


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (37.5, -12, 4), (-120, 25, -8), (179, 5, 0), (90, 0, 30)])
def test_angles_round_trip(yaw, pitch, roll):
    target = (0.05, -0.1, 0.2)
    cam = C.camera_from_angles(yaw, pitch, roll, radius=3.1, target=target)
    a = cam.angles(target=target)
    assert a.yaw == pytest.approx(yaw, abs=1e-9)
    assert a.pitch == pytest.approx(pitch, abs=1e-9)
    assert a.roll == pytest.approx(roll, abs=1e-9)
    assert a.radius == pytest.approx(3.1)


def test_rotation_is_proper_opencv_frame():
    cam = C.camera_from_angles(0, 0)
    np.testing.assert_allclose(cam.cam2world[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    for yaw in range(0, 360, 15):
        r = C.camera_from_angles(yaw, 10, 5).cam2world[:3, :3]
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)


def test_default_orbit_matches_release_layout():
    cams = C.orbit()
    assert len(cams) == 32
    front, back = cams[0], cams[16]
    np.testing.assert_allclose(front.position, [0, 0, 2.7], atol=1e-9)
    np.testing.assert_allclose(front.forward, [0, 0, -1], atol=1e-9)
    # World y up: the image's "down" axis points to world -y at the frontal view.
    np.testing.assert_allclose(front.cam2world[:3, 1], [0, -1, 0], atol=1e-9)
    assert back.position[2] < -2.69, "view N/2 must be behind the head"
    np.testing.assert_allclose(front.intrinsics, C.normalised_intrinsics(4.2647))
    for cam in cams:
        assert np.linalg.norm(cam.position) == pytest.approx(2.7)
        # The optical axis passes through the origin.
        np.testing.assert_allclose(cam.look_at_point(), 0, atol=1e-9)
        assert cam.cam2world[:3, 1] @ np.array([0, 1, 0]) < 0, "camera y (down) must point down in the world"
    yaws = [c.angles().yaw % 360 for c in cams]
    np.testing.assert_allclose(yaws, np.arange(32) * 11.25, atol=1e-9)


def test_orbit_rings_and_view_names():
    cams = C.orbit(8, pitches=[-15, 0, 20])
    assert len(cams) == 24
    assert [round(c.angles().pitch) for c in cams[::8]] == [-15, 0, 20]
    assert C.view_name(7) == "0007"
    with pytest.raises(ValueError):
        C.orbit(0)


def test_project_centre_and_rays_agree():
    cam = C.camera_from_angles(30, 10)
    uv, depth = cam.project(np.zeros((1, 3)), 512, 512)
    np.testing.assert_allclose(uv[0], [256, 256], atol=1e-9)
    assert depth[0] == pytest.approx(2.7)
    # A pixel's ray hits the point that projects back to that pixel.
    origins, dirs = cam.rays(64, 48)
    point = origins[10, 20] + 2.5 * dirs[10, 20]
    uv, _ = cam.project(point[None], 64, 48)
    np.testing.assert_allclose(uv[0], [20.5, 10.5], atol=1e-9)


def test_nerfstudio_round_trip_exact(reference_labels):
    cams = [cam for _, cam in _labelled_cameras(reference_labels)] + C.orbit(32, pitches=[0, 20])
    doc = C.transforms_document(cams, [f"views/{i:04d}.png" for i in range(len(cams))], 512, 512)
    doc = json.loads(json.dumps(doc))  # through the file format
    back = C.cameras_from_transforms(doc)
    for (path, cam2), cam in zip(back, cams):
        np.testing.assert_allclose(np.array(cam2.to_label()), np.array(cam.to_label()), atol=1e-6, rtol=0)
        assert path.startswith("views/")


def test_nerfstudio_axes_are_opengl():
    frame = C.nerfstudio_frame(C.camera_from_angles(0, 0), 512, 512, "a.png")
    m = np.array(frame["transform_matrix"])
    np.testing.assert_allclose(m[:3, 1], [0, 1, 0], atol=1e-12)  # camera up = world up
    np.testing.assert_allclose(-m[:3, 2], [0, 0, -1], atol=1e-12)  # looks down its -z, toward the head
    np.testing.assert_allclose(m[:3, 3], [0, 0, 2.7], atol=1e-12)


@pytest.mark.parametrize("w,h", [(512, 512), (256, 256), (1024, 768), (100, 37)])
def test_intrinsics_scale_with_resolution(w, h):
    cam = C.camera_from_angles(10, 5)
    fx, fy, cx, cy = cam.pixel_intrinsics(w, h)
    assert fx == pytest.approx(4.2647 * w) and fy == pytest.approx(4.2647 * h)
    assert (cx, cy) == pytest.approx((w / 2, h / 2))
    frame = C.nerfstudio_frame(cam, w, h, "x.png")
    assert (frame["w"], frame["h"]) == (w, h)
    np.testing.assert_allclose(C.camera_from_nerfstudio_frame(frame).intrinsics, cam.intrinsics, atol=1e-12)


def test_label_files_round_trip(tmp_path, reference_labels):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(reference_labels))
    cams = C.read_labels(src)
    assert list(cams) == ["000000.png", "000006.png", "000009.png"]
    out = tmp_path / "out.json"
    C.write_labels(out, cams)
    again = C.read_labels(out)
    for name in cams:
        assert again[name].to_label() == pytest.approx(cams[name].to_label(), abs=0)


def test_bad_label_files(tmp_path):
    from portrait3d.errors import UserError

    bad = tmp_path / "bad.json"
    bad.write_text('{"labels": [["a.png", [1, 2, 3]]]}')
    with pytest.raises(UserError, match="25 floats"):
        C.read_labels(bad)
    with pytest.raises(UserError, match="no such"):
        C.read_labels(tmp_path / "missing.json")
    bad.write_text("not json")
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        C.read_labels(bad)
