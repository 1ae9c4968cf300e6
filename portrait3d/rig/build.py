"""One rigged GLB from one static GLB: landmarks lifted, sockets and lips cut, parts added, the 67
morph targets sampled, the skeleton and skin attached."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portrait3d.cameras import Camera

from .arkit import TARGET_NAMES
from .fields import FaceRig
from .gltf import RigMesh, read_static, write_rig
from .landmarks3d import Face, lift_landmarks
from .parts import (
    EYE_RADIUS,
    Part,
    Surface,
    cavity,
    eyeball,
    eyeball_centre,
    iris_from_photo,
    socket_faces,
    split_lips,
    teeth_row,
    tongue,
)
from .refine import near, refine
from .skeleton import build_skeleton, head_weights


def face_of(static, camera_doc: dict, image_size: int) -> Face:
    """The photo's landmarks on the static mesh."""
    extras = static.extras
    points = np.asarray(camera_doc["landmarks"]["points"], dtype=np.float64)
    lifted = lift_landmarks(
        points[:, :2],
        Camera.from_label(camera_doc["label"]),
        image_size,
        static.vertices,
        static.faces,
        np.asarray(extras.get("origin_source_units", (0.0, 0.0, 0.0))),
        float(extras.get("metres_per_unit", 0.4)),
    )
    return Face(lifted)


REFINE_EDGE = 0.0022
"""The rig refines the eyes' and lips' surroundings until their edges are about this long (m)."""


def refine_face(static, rig: FaceRig):
    """The static head with finer triangles around the lid contours and the mouth line, where the
    sockets and the lip split are cut and the fields bend most: ``(vertices, faces, [normals, uv])``."""
    face, iod = rig.face, rig.iod
    contours = np.concatenate([*face.lids("left"), *face.lids("right"), face.mouth_line])
    curve = np.concatenate([np.linspace(a, b, 6) for a, b in zip(contours[:-1], contours[1:])])
    vertices, faces, attributes = static.vertices, static.faces, [static.normals, static.uv]
    for _ in range(4):
        edge = np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1)
        selected = near(vertices, faces, curve, 0.06 * iod) & (edge > REFINE_EDGE)
        if not selected.any():
            break
        vertices, faces, attributes = refine(vertices, faces, attributes, selected)
    return vertices, faces, attributes


def _targets(rig: FaceRig, vertices: np.ndarray, kind: str, side: np.ndarray | None = None) -> np.ndarray:
    return np.stack([rig.displacement(name, vertices, kind, side) for name in TARGET_NAMES])


def rig_head(static_path: Path, out: Path, camera_doc: dict, photo: np.ndarray, extras: dict | None = None) -> dict:
    """Write the rigged GLB ``out`` from export-mesh's ``static_path``.

    Args:
        camera_doc: ``input/camera.json`` (its ``label`` and ``landmarks``).
        photo: (S, S, 3) uint8 ``input/aligned.png`` (the landmarks' pixels; iris colour).
    Returns:
        Figures for the report (triangles, iris, jaw angle, file size).
    """
    static = read_static(static_path)
    face = face_of(static, camera_doc, photo.shape[0])
    rig = FaceRig(face)
    surface = Surface(static.vertices, static.faces)

    vertices, faces, (normals, uv) = refine_face(static, rig)
    centres = {eye: eyeball_centre(face, eye, surface) for eye in ("left", "right")}
    cut = socket_faces(vertices, faces, face, centres)
    copies, faces, side = split_lips(vertices, faces[~cut], rig)
    # A mouth the photo shows open is closed in the neutral head (its lips meet on the mouth line).
    head_vertices = vertices[copies] + rig.mouth_closing(vertices[copies], side)
    joints, weights = head_weights(head_vertices, rig)

    pixels = np.asarray(camera_doc["landmarks"]["points"], dtype=np.float64)
    eyes, irises = [], {}
    for eye in ("left", "right"):
        colour, fraction = iris_from_photo(photo, pixels, eye)
        upper, _ = face.lids(eye)
        # Irises vary little between adults (10.5-12.5 mm): the photo's ratio, kept within that range.
        iris_radius = float(np.clip(0.5 * fraction * np.linalg.norm(upper[-1] - upper[0]), 0.00525, 0.00625))
        centre = centres[eye]
        irises[eye] = {"colour": np.round(colour, 3).tolist(), "diameter_mm": round(2000 * iris_radius, 1)}
        eyes.append(eyeball(centre, EYE_RADIUS, iris_radius, colour, f"eye_{eye}", f"eye_{eye}"))
    skeleton = build_skeleton(rig, centres)
    mouth: list[Part] = [
        teeth_row(rig, True, surface),
        teeth_row(rig, False, surface),
        tongue(rig, surface),
        cavity(rig, surface),
    ]
    # The jaw's angle is set where the lower incisors really are (behind the lips' surface).
    lower_teeth = mouth[1].vertices
    centre = np.abs(lower_teeth[:, 0]) < 0.25 * np.ptp(lower_teeth[:, 0])
    incisor = lower_teeth[np.flatnonzero(centre)[np.argmax((lower_teeth[:, 2] + lower_teeth[:, 1])[centre])]]
    moving = [(head_vertices, rig.jaw_weight(head_vertices, side))]
    moving += [(part.vertices, np.ones(len(part.vertices))) for part in mouth[1:]]
    upper_teeth = mouth[0].vertices
    upper_edge = upper_teeth[np.abs(upper_teeth[:, 0]) < 0.25 * np.ptp(upper_teeth[:, 0]), 1].min()
    rig.fit_jaw(incisor, moving, overlap=float(incisor[1] - upper_edge))

    meshes = [
        RigMesh(
            "head",
            head_vertices,
            faces,
            _targets(rig, head_vertices, "skin", side),
            normals=normals[copies],
            uv=uv[copies],
            joints=joints,
            weights=weights,
        )
    ]
    head_joint = skeleton.positions[1]
    for part in mouth:
        meshes.append(
            RigMesh(
                part.name,
                part.vertices - head_joint,
                part.faces,
                _targets(rig, part.vertices, part.kind),
                parent=1,
                colors=part.colors,
            )
        )
    for joint, part in zip((2, 3), eyes):
        # Eye vertices are already relative to the eyeball's centre, the eye joint's origin.
        meshes.append(
            RigMesh(
                part.name,
                part.vertices,
                part.faces,
                _targets(rig, part.vertices, part.kind),
                parent=joint,
                colors=part.colors,
            )
        )
    info = {
        "triangles": int(sum(len(m.faces) for m in meshes)),
        "head_triangles": int(len(faces)),
        "socket_triangles_cut": int(cut.sum()),
        "lip_seam_vertices": int(len(copies) - len(vertices)),
        "jaw_angle_deg": round(float(np.degrees(rig.jaw_angle)), 2),
        "interocular_mm": round(1000 * rig.iod, 1),
        "photo_lip_gap_mm": round(1000 * rig.lip_gap, 1),
        "iris": irises,
    }
    write_rig(
        out,
        meshes,
        skeleton,
        TARGET_NAMES,
        static.texture_png,
        {**static.extras, **(extras or {}), "rig": {k: v for k, v in info.items() if k != "iris"}},
    )
    info["mb"] = round(out.stat().st_size / 1e6, 3)
    return info
