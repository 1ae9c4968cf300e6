"""The Gaussian parameter set, its activations and the spherical-harmonic colour.

Conventions are those of the original 3D Gaussian splatting code (and of the files it writes):
scales are stored as logarithms, opacity as a logit, rotations as (w, x, y, z) quaternions that
need not be normalised, and colour as real spherical-harmonic coefficients whose degree-0 term
maps to RGB through ``0.5 + C0 * dc``. Coefficient order within a degree is m = -l..l, with the
signs of the 3DGS code (which match the Condon-Shortley phase of ``KHR_gaussian_splatting``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def num_coefficients(degree: int) -> int:
    """Spherical-harmonic coefficients per colour channel up to ``degree``: (degree + 1)²."""
    return (degree + 1) ** 2


def degree_of(coefficients: int) -> int:
    """The degree whose coefficient count is ``coefficients`` (1, 4, 9 or 16)."""
    degree = int(round(math.sqrt(coefficients))) - 1
    if num_coefficients(degree) != coefficients or not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"{coefficients} is not a spherical-harmonic coefficient count")
    return degree


@dataclass
class Gaussians:
    """N Gaussians as raw (pre-activation) parameters, numpy or torch.

    Attributes:
        means: (N, 3) centres.
        log_scales: (N, 3) log of the standard deviations along the local axes.
        quats: (N, 4) rotations as (w, x, y, z), not necessarily unit.
        opacity_logits: (N,) logit of the opacity.
        sh: (N, K, 3) spherical-harmonic coefficients, K = (degree + 1)², ``sh[:, 0]`` the DC term.
    """

    means: np.ndarray | torch.Tensor
    log_scales: np.ndarray | torch.Tensor
    quats: np.ndarray | torch.Tensor
    opacity_logits: np.ndarray | torch.Tensor
    sh: np.ndarray | torch.Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return degree_of(int(self.sh.shape[1]))

    def numpy(self) -> Gaussians:
        """A float32 numpy copy (detached)."""

        def as_array(x):
            if isinstance(x, torch.Tensor):
                x = x.detach().cpu().numpy()
            return np.ascontiguousarray(x, dtype=np.float32)

        return Gaussians(*(as_array(getattr(self, f)) for f in FIELDS))

    def torch(self, device: str | torch.device = "cpu") -> Gaussians:
        """A float32 torch copy on ``device``."""
        return Gaussians(*(torch.as_tensor(np.asarray(getattr(self.numpy(), f)), device=device) for f in FIELDS))

    def subset(self, index) -> Gaussians:
        """The Gaussians at ``index`` (a boolean mask or integer indices)."""
        return Gaussians(*(getattr(self, f)[index] for f in FIELDS))


FIELDS = ("means", "log_scales", "quats", "opacity_logits", "sh")


def with_degree(gaussians: Gaussians, degree: int) -> Gaussians:
    """The same Gaussians with ``degree`` spherical harmonics: higher terms dropped, or zeros added."""
    g = gaussians.numpy()
    k = num_coefficients(degree)
    sh = g.sh[:, :k]
    if sh.shape[1] < k:
        sh = np.concatenate([sh, np.zeros((len(g), k - sh.shape[1], 3), np.float32)], axis=1)
    return Gaussians(g.means, g.log_scales, g.quats, g.opacity_logits, np.ascontiguousarray(sh))


def placed(gaussians: Gaussians, origin: np.ndarray, metres_per_unit: float) -> Gaussians:
    """World units -> file units: shift by ``-origin`` and scale uniformly (rotations and colours unchanged)."""
    g = gaussians.numpy()
    means = (g.means - np.asarray(origin, np.float32)) * np.float32(metres_per_unit)
    log_scales = g.log_scales + np.float32(math.log(metres_per_unit))
    return Gaussians(means.astype(np.float32), log_scales.astype(np.float32), g.quats, g.opacity_logits, g.sh)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def rgb_to_sh0(rgb):
    """RGB in [0, 1] -> degree-0 coefficient."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0):
    """Degree-0 coefficient -> RGB (unclamped)."""
    return sh0 * SH_C0 + 0.5


def normalised_quats(quats: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions with w >= 0 (the same rotations)."""
    q = quats / np.linalg.norm(quats, axis=1, keepdims=True).clip(1e-12)
    return np.where(q[:, :1] < 0, -q, q)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) (w, x, y, z), any norm -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)  # fmt: skip


def quat_from_normals(normals: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals -> (N, 4) (w, x, y, z) rotations taking the local z axis onto each normal."""
    z = np.array([0.0, 0.0, 1.0])
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
    axis = np.cross(z, n)
    cos = n @ z
    # Half-angle form: q = (1 + cos, z x n), normalised; the antipodal case turns about x.
    q = np.concatenate([(1.0 + cos)[:, None], axis], axis=1)
    flipped = cos < -1 + 1e-6
    q[flipped] = (0.0, 1.0, 0.0, 0.0)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def covariances(log_scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """World covariance R S S Rᵀ: (N, 3), (N, 4) -> (N, 3, 3)."""
    m = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]
    return m @ m.transpose(1, 2)


def sh_colour(sh: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Colour of each Gaussian seen along ``directions`` (from the camera to the Gaussian).

    Args:
        sh: (N, K, 3) coefficients, K = (degree + 1)².
        directions: (N, 3) unit vectors.
    Returns:
        (N, 3) RGB, clamped at zero (as 3DGS and the glTF extension do).
    """
    degree = degree_of(sh.shape[1])
    out = SH_C0 * sh[:, 0]
    if degree >= 1:
        x, y, z = directions.unbind(-1)
        x, y, z = x[:, None], y[:, None], z[:, None]
        out = out - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if degree >= 2:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            out = (
                out
                + SH_C2[0] * xy * sh[:, 4]
                + SH_C2[1] * yz * sh[:, 5]
                + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6]
                + SH_C2[3] * xz * sh[:, 7]
                + SH_C2[4] * (xx - yy) * sh[:, 8]
            )
            if degree >= 3:
                out = (
                    out
                    + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9]
                    + SH_C3[1] * xy * z * sh[:, 10]
                    + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                    + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                    + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13]
                    + SH_C3[5] * z * (xx - yy) * sh[:, 14]
                    + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15]
                )
    return (out + 0.5).clamp_min(0.0)
