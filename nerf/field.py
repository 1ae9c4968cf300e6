"""The instant-NGP radiance field: a multiresolution hash grid and two small MLPs.

Pure torch, so that it trains on a CPU; on CUDA the hash grid and the MLPs use
tinycudann when it is installed (:func:`tcnn_available`). Points are in
PanoHead world coordinates; the field maps the cube ``[-half_extent,
half_extent]^3`` onto the grid and is empty outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Spatial hash primes of the instant-NGP paper (one per axis; the first is 1 so that x stays coherent).
_HASH_PRIMES = (1, 2654435761, 805459861)
# The 8 corners of a unit cell, (8, 3), as 0/1 offsets.
_CORNERS = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=torch.long)


def tcnn_available() -> bool:
    """True when tinycudann imports (it needs CUDA and is built from source)."""
    try:
        import tinycudann  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure (missing, no CUDA, ABI) means "use torch"
        return False
    return True


@dataclass
class FieldConfig:
    """Shape of the radiance field."""

    half_extent: float = 0.5
    """Half side of the cube (world units, centred at the origin) that the field covers."""
    num_levels: int = 12
    """Levels of the multiresolution hash grid."""
    features_per_level: int = 2
    """Features stored per grid vertex and level."""
    log2_hashmap_size: int = 17
    """log2 of the entries of each level's hash table."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level."""
    max_resolution: int = 512
    """Grid resolution of the finest level."""
    hidden_dim: int = 64
    """Width of the density and colour MLPs."""
    geo_features: int = 15
    """Features the density MLP hands to the colour MLP (besides density)."""
    implementation: str = "auto"
    """Hash grid and MLPs: "torch", "tcnn" (tinycudann, CUDA only) or "auto" (tcnn when available on CUDA)."""


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped, as in instant-NGP (keeps early steps stable)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) with a gradient clamped at exp(15)."""
    return _TruncExp.apply(x)


class HashGrid(nn.Module):
    """Multiresolution hash encoding in torch.

    Args:
        num_levels, features_per_level, log2_hashmap_size, base_resolution,
        max_resolution: see :class:`FieldConfig`.
    """

    def __init__(
        self,
        num_levels: int = 12,
        features_per_level: int = 2,
        log2_hashmap_size: int = 17,
        base_resolution: int = 16,
        max_resolution: int = 512,
    ) -> None:
        super().__init__()
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(num_levels - 1, 1))
        resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(num_levels)]
        table_size = 2**log2_hashmap_size
        sizes, dense = [], []
        for res in resolutions:
            vertices = (res + 1) ** 3
            dense.append(vertices <= table_size)
            sizes.append(min(vertices, table_size))
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.output_dim = num_levels * features_per_level
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        self.table = nn.Parameter(torch.empty(sum(sizes), features_per_level).uniform_(-1e-4, 1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points.

        Args:
            x: (N, 3) points in [0, 1]^3.
        Returns:
            (N, num_levels * features_per_level) features.
        """
        pos = x[:, None, :] * self.resolutions[None, :, None]  # (N, L, 3)
        cell = torch.floor(pos)
        frac = pos - cell
        corners = cell.long()[:, :, None, :] + _CORNERS.to(x.device)[None, None]  # (N, L, 8, 3)
        stride = (self.resolutions.long() + 1)[None, :, None]  # (1, L, 1)
        dense_index = corners[..., 0] + corners[..., 1] * stride + corners[..., 2] * stride * stride
        hashed = corners[..., 0] * _HASH_PRIMES[0]
        hashed = hashed ^ (corners[..., 1] * _HASH_PRIMES[1])
        hashed = hashed ^ (corners[..., 2] * _HASH_PRIMES[2])
        index = torch.where(self.dense[None, :, None], dense_index, hashed) % self.sizes[None, :, None]
        index = index + self.offsets[None, :, None]  # (N, L, 8)
        bits = _CORNERS.to(x.device).to(x.dtype)  # (8, 3)
        weights = torch.prod(
            frac[:, :, None, :] * bits[None, None] + (1.0 - frac[:, :, None, :]) * (1.0 - bits[None, None]), dim=-1
        )  # (N, L, 8)
        features = self.table[index]  # (N, L, 8, F)
        return (features * weights[..., None]).sum(dim=2).reshape(x.shape[0], -1)


def spherical_harmonics(directions: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 3 of unit directions: (N, 3) -> (N, 16)."""
    x, y, z = directions.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ],
        dim=-1,
    )


def _mlp(in_dim: int, hidden: int, out_dim: int, hidden_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class NGPField(nn.Module):
    """Density and view-dependent colour at world points.

    Args:
        config: the field's shape.
        device_type: "cpu" or "cuda"; tinycudann is only considered on CUDA.
    """

    def __init__(self, config: FieldConfig, device_type: str = "cpu") -> None:
        super().__init__()
        self.config = config
        impl = config.implementation
        if impl == "tcnn" and not (device_type == "cuda" and tcnn_available()):
            impl = "torch"
        if impl == "auto":
            impl = "tcnn" if device_type == "cuda" and tcnn_available() else "torch"
        self.implementation = impl
        c = config
        if impl == "tcnn":
            import tinycudann as tcnn

            self.encoding = tcnn.Encoding(
                3,
                {
                    "otype": "HashGrid",
                    "n_levels": c.num_levels,
                    "n_features_per_level": c.features_per_level,
                    "log2_hashmap_size": c.log2_hashmap_size,
                    "base_resolution": c.base_resolution,
                    "per_level_scale": math.exp(
                        (math.log(c.max_resolution) - math.log(c.base_resolution)) / max(c.num_levels - 1, 1)
                    ),
                },
            )
            encoded_dim = self.encoding.n_output_dims
        else:
            self.encoding = HashGrid(
                c.num_levels, c.features_per_level, c.log2_hashmap_size, c.base_resolution, c.max_resolution
            )
            encoded_dim = self.encoding.output_dim
        self.density_mlp = _mlp(encoded_dim, c.hidden_dim, 1 + c.geo_features, 1)
        self.color_mlp = _mlp(c.geo_features + 16, c.hidden_dim, 3, 2)

    def _normalise(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points -> [0, 1]^3 grid coordinates and an inside mask: (N, 3) -> (N, 3), (N,)."""
        unit = (points / self.config.half_extent + 1.0) * 0.5
        inside = ((unit >= 0.0) & (unit <= 1.0)).all(dim=-1)
        return unit.clamp(0.0, 1.0), inside

    def _geometry(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit, inside = self._normalise(points)
        h = self.density_mlp(self.encoding(unit).float())
        density = trunc_exp(h[:, 0] - 1.0) * inside
        return density, h[:, 1:]

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Volume density (1 / world unit) at world points: (N, 3) -> (N,)."""
        return self._geometry(points)[0]

    def forward(self, points: torch.Tensor, view_dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density and colour.

        Args:
            points: (N, 3) world points.
            view_dirs: (N, 3) unit directions from the camera toward the points.
        Returns:
            ``(density (N,), rgb (N, 3) in [0, 1])``.
        """
        density, geo = self._geometry(points)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([geo, spherical_harmonics(view_dirs)], dim=-1)))
        return density, rgb

    def rgb(self, points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        """Colour seen along ``view_dirs`` at world points: (N, 3), (N, 3) -> (N, 3)."""
        return self.forward(points, view_dirs)[1]
