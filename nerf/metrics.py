"""Geometry and image metrics against ground truth: Chamfer distance, F-score, PSNR, SSIM."""

from __future__ import annotations

import numpy as np
import trimesh


def surface_distance(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Exact distance from each point to the nearest point of the mesh surface: (N, 3) -> (N,)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, dtype=np.float32))).numpy().astype(np.float64)


def chamfer_fscore(
    mesh_pred: trimesh.Trimesh, mesh_gt: trimesh.Trimesh, threshold: float = 0.01, samples: int = 100_000, seed: int = 0
) -> dict:
    """Symmetric Chamfer distance and F-score between two surfaces.

    Points are sampled uniformly on each surface and measured against the
    other *surface* (not its samples), so the figures do not depend on the
    sample density beyond noise.

    Args:
        mesh_pred: the reconstructed mesh.
        mesh_gt: the ground-truth mesh; its bounding-box diagonal is the unit of both figures.
        threshold: F-score distance threshold as a fraction of the GT diagonal (0.01 = 1%).
        samples: points sampled on each surface.
        seed: sampling seed.
    Returns:
        ``chamfer_pct_diag``: mean of the two directed mean distances, in % of the GT diagonal;
        ``fscore``: harmonic mean of precision (pred points within the threshold of GT) and
        recall (GT points within the threshold of pred), in [0, 1];
        ``precision``, ``recall``, ``diagonal`` (GT units).
    """
    diagonal = float(np.linalg.norm(np.ptp(np.asarray(mesh_gt.vertices), axis=0)))
    pred_points, _ = trimesh.sample.sample_surface(mesh_pred, samples, seed=seed)
    gt_points, _ = trimesh.sample.sample_surface(mesh_gt, samples, seed=seed + 1)
    pred_to_gt = surface_distance(pred_points, mesh_gt)
    gt_to_pred = surface_distance(gt_points, mesh_pred)
    chamfer = 0.5 * (pred_to_gt.mean() + gt_to_pred.mean())
    tau = threshold * diagonal
    precision = float(np.mean(pred_to_gt < tau))
    recall = float(np.mean(gt_to_pred < tau))
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "chamfer_pct_diag": float(100.0 * chamfer / diagonal),
        "fscore": float(fscore),
        "precision": precision,
        "recall": recall,
        "diagonal": diagonal,
    }


def normal_angle_error(
    mesh_pred: trimesh.Trimesh, mesh_gt: trimesh.Trimesh, samples: int = 100_000, seed: int = 0
) -> dict:
    """Mean angle between the normals of two surfaces: how smooth and faithful a surface is, which
    Chamfer misses (pits and fins a millimetre deep barely move it, but tilt the normals a lot).

    Points are sampled on each surface; each takes the normal of its triangle and is compared with the
    normal of the other surface's closest triangle (both ways, like Chamfer).

    Returns:
        ``mean_deg``: mean of the two directed mean angles (degrees); ``median_deg``; ``over_30_pct``: share
        (%) of points whose normals differ by more than 30 degrees (pits, fins).
    """
    import open3d as o3d

    angles = []
    for a, b, s in ((mesh_pred, mesh_gt, seed), (mesh_gt, mesh_pred, seed + 1)):
        points, faces = trimesh.sample.sample_surface(a, samples, seed=s)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor(np.asarray(b.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(b.faces, dtype=np.uint32)),
        )
        hit = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points, dtype=np.float32)))
        other = np.asarray(b.face_normals)[hit["primitive_ids"].numpy().astype(np.int64)]
        cos = np.clip(np.sum(np.asarray(a.face_normals)[faces] * other, axis=1), -1.0, 1.0)
        angles.append(np.degrees(np.arccos(cos)))
    both = np.concatenate(angles)
    return {
        "mean_deg": float(0.5 * (angles[0].mean() + angles[1].mean())),
        "median_deg": float(np.median(both)),
        "over_30_pct": float(100.0 * np.mean(both > 30.0)),
    }


def psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of float images in [0, 1]: (H, W, C) each, optional (H, W) bool mask."""
    diff = np.asarray(image, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if mask is not None:
        diff = diff[mask]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity of float RGB images in [0, 1] (scikit-image, Gaussian window)."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            np.asarray(image, dtype=np.float64),
            np.asarray(reference, dtype=np.float64),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def composite(rgba: np.ndarray, background: float = 1.0) -> np.ndarray:
    """(H, W, 4) uint8 or float RGBA -> (H, W, 3) float RGB in [0, 1] over a grey level ``background``."""
    x = np.asarray(rgba, dtype=np.float64)
    if np.asarray(rgba).dtype == np.uint8:
        x = x / 255.0
    alpha = x[..., 3:]
    return x[..., :3] * alpha + background * (1.0 - alpha)


def mesh_render_scores(mesh: trimesh.Trimesh, references: list, background: float = 1.0) -> dict:
    """Render a textured mesh at reference views and compare.

    Args:
        mesh: textured or vertex-coloured mesh in PanoHead units.
        references: ``(camera, rgba)`` pairs; rgba (H, W, 4) uint8 ground-truth renders.
        background: grey level both images are composited over.
    Returns:
        Mean ``psnr`` (dB) and ``ssim`` over the views, and per-view ``psnr_views``.
    """
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(mesh)
    psnrs, ssims = [], []
    for camera, rgba in references:
        h, w = rgba.shape[:2]
        got = composite(renderer.render_rgba(camera, (w, h)), background)
        want = composite(rgba, background)
        psnrs.append(psnr(got, want))
        ssims.append(ssim(got, want))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "psnr_views": [round(p, 2) for p in psnrs]}
