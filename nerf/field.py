"""The instant-NGP radiance field: a multiresolution hash grid and two small MLPs.

Pure torch, so that it trains on a CPU; on CUDA the hash grid uses tinycudann
when it is installed (:func:`tcnn_available`); the MLPs are torch everywhere. Points are in
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
    view_degree: int = 1
    """Highest spherical-harmonic degree of the view direction that the colour sees (0-3; 0: the colour does
    not depend on the view). 1 by default: with 3, the colour learns each generated view's own colour cast
    per direction and a view between two shows a blend of their casts (docs/BENCHMARKS.md, "View-dependent
    colour")."""
    implementation: str = "auto"
    """Hash grid and MLPs: "torch", "tcnn" (tinycudann, CUDA only) or "auto" (tcnn when available on CUDA)."""


# Densities stay below exp(20): far beyond opaque at any step size, and no overflow in float32 sums.
_MAX_LOG_DENSITY = 20.0


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped, as in instant-NGP (keeps early steps stable)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x.clamp(max=_MAX_LOG_DENSITY))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) with a gradient clamped at exp(15)."""
    return _TruncExp.apply(x)


class _WeightedGather(torch.autograd.Function):
    """``sum_k weights[i, k] * table[index[i, k]]`` with a histogram backward.

    torch's own ``embedding_bag`` backward sorts the indices, and ``index_add_``
    of two-float rows is little better: together they were half of a CPU
    training step. The gradient of each feature column is a weighted histogram
    of the indices instead (``bincount``: one serial pass, deterministic, and
    three times faster than ``index_add_`` on a CPU).
    """

    @staticmethod
    def forward(ctx, table, index, weights):  # type: ignore[override]
        ctx.save_for_backward(table, index, weights)
        ctx.rows = table.shape[0]
        return torch.nn.functional.embedding_bag(index, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        table, index, weights = ctx.saved_tensors
        # The weights need a gradient only when the points do (a caller that learns positions; a fit does not).
        grad_weights = (table[index] * grad[:, None, :]).sum(dim=-1) if ctx.needs_input_grad[2] else None
        if not ctx.needs_input_grad[0]:
            return None, None, grad_weights
        flat = index.reshape(-1)
        columns = [
            torch.bincount(flat, weights=(weights * grad[:, k, None]).reshape(-1), minlength=ctx.rows)
            for k in range(grad.shape[1])
        ]
        return torch.stack(columns, dim=-1).to(grad.dtype), None, grad_weights


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
        if (max_resolution + 2) * table_size >= 2**31:
            raise ValueError("max_resolution * 2**log2_hashmap_size must stay below 2**31 (int32 hashing)")
        sizes, dense = [], []
        for res in resolutions:
            vertices = (res + 1) ** 3
            dense.append(vertices <= table_size)
            sizes.append(min(vertices, table_size))
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.output_dim = num_levels * features_per_level
        self.table_size = table_size
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int32), persistent=False)
        primes = [p % table_size for p in _HASH_PRIMES]
        self.register_buffer("hash_primes", torch.tensor(primes, dtype=torch.int32), persistent=False)
        # Dense levels are the coarse ones, a prefix of the levels (resolutions grow).
        self.num_dense_levels = sum(dense)
        if any(dense[self.num_dense_levels :]):
            raise ValueError("dense hash grid levels must come before the hashed ones")
        strides = torch.tensor([r + 1 for r in resolutions[: self.num_dense_levels]], dtype=torch.int32)
        multipliers = torch.stack([torch.ones_like(strides), strides, strides * strides], dim=-1)
        self.register_buffer("dense_multipliers", multipliers.reshape(-1, 3), persistent=False)  # (D, 3)
        self.table = nn.Parameter(torch.empty(sum(sizes), features_per_level).uniform_(-1e-4, 1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points.

        Args:
            x: (N, 3) points in [0, 1]^3.
        Returns:
            (N, num_levels * features_per_level) features.
        """
        n, levels = x.shape[0], self.resolutions.shape[0]
        res = self.resolutions
        # Per axis, (N, L) tensors with the points along the last-but-one dimension: torch's CPU kernels
        # vectorise those, not the (..., 2, 2, 2) broadcasts of all axes at once (1.6-1.8x faster, same bits).
        lows, weights = [], []
        for axis in range(3):
            pos = x[:, axis, None] * res
            cell = torch.minimum(torch.floor(pos), res - 1.0)  # x = 1 stays in the last cell
            frac = pos - cell
            lows.append(cell.int())
            weights.append((1.0 - frac, frac))
        # Each corner's index combines one term per axis, for the low and the high corner: a sum of
        # coordinate * stride on the dense levels (a prefix: the coarse ones), an XOR of coordinate * prime on
        # the hashed ones. int32 throughout: the table sizes are powers of two (hashed) or exact (dense), and
        # the low bits of x * prime only depend on the low bits of the prime.
        parts = []
        dense = self.num_dense_levels
        if dense:
            strides = self.dense_multipliers  # (D, 3)
            terms = [(t, t + strides[:, a]) for a in range(3) for t in [lows[a][:, :dense] * strides[:, a]]]
            parts.append(_corners(terms, torch.add))
        if dense < levels:
            primes = self.hash_primes
            terms = [(t, t + primes[a]) for a in range(3) for t in [lows[a][:, dense:] * primes[a]]]
            parts.append(_corners(terms, torch.bitwise_xor) & (self.table_size - 1))
        index = (torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]) + self.offsets[:, None]  # (N, L, 8)
        w = _corners(weights, torch.mul)
        features = _WeightedGather.apply(self.table, index.reshape(n * levels, 8), w.reshape(n * levels, 8))
        return features.reshape(n, self.output_dim)


def _corners(terms, combine) -> torch.Tensor:
    """The 8 cell corners from per-axis (low, high) terms: 3 x ((N, L), (N, L)) -> (N, L, 8).

    Corner ``k = 4 b_x + 2 b_y + b_z`` is ``combine(combine(x[b_x], y[b_y]), z[b_z])``, in that order, so
    sums and products round as they always did.
    """
    (x0, x1), (y0, y1), (z0, z1) = terms
    pairs = [combine(a, b) for a in (x0, x1) for b in (y0, y1)]
    return torch.stack([combine(p, c) for p in pairs for c in (z0, z1)], dim=-1)


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
        if not 0 <= c.view_degree <= 3:
            raise ValueError(f"view_degree must be 0-3, got {c.view_degree}")
        # Degree d uses the first (d + 1)² of the 16 components; the MLP keeps its width, so checkpoints of
        # every degree have one layout.
        kept = torch.arange(16) < (c.view_degree + 1) ** 2
        self.register_buffer("view_components", kept.float(), persistent=False)

    def _normalise(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points -> [0, 1]^3 grid coordinates and an inside mask: (N, 3) -> (N, 3), (N,)."""
        unit = (points / self.config.half_extent + 1.0) * 0.5
        inside = ((unit >= 0.0) & (unit <= 1.0)).all(dim=-1)
        return unit.clamp(0.0, 1.0), inside

    def geometry_logits(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The density MLP's raw output: (N, 3) -> log density (N,), geometry features (N, G), inside (N,) bool.

        The density is ``exp(log_density)`` inside the cube and 0 outside (gradient clamped as in instant-NGP).
        """
        unit, inside = self._normalise(points)
        h = self.density_mlp(self.encoding(unit).float())
        return h[:, 0] - 1.0, h[:, 1:], inside

    def colour_from_features(self, geo: torch.Tensor, dir_encoding: torch.Tensor) -> torch.Tensor:
        """Colour from geometry features and ``spherical_harmonics(view_dirs)``: (N, G), (N, 16) -> (N, 3)."""
        if self.config.view_degree < 3:
            dir_encoding = dir_encoding * self.view_components
        return torch.sigmoid(self.color_mlp(torch.cat([geo, dir_encoding], dim=-1)))

    def _geometry(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_density, geo, inside = self.geometry_logits(points)
        return trunc_exp(log_density) * inside, geo

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Volume density (1 / world unit) at world points: (N, 3) -> (N,)."""
        return self._geometry(points)[0]

    def forward(
        self, points: torch.Tensor, view_dirs: torch.Tensor | None = None, dir_encoding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density and colour.

        Args:
            points: (N, 3) world points.
            view_dirs: (N, 3) unit directions from the camera toward the points.
            dir_encoding: (N, 16) ``spherical_harmonics(view_dirs)`` instead of ``view_dirs``
                (samples of one ray share it, so renderers compute it once per ray).
        Returns:
            ``(density (N,), rgb (N, 3) in [0, 1])``.
        """
        density, geo = self._geometry(points)
        if dir_encoding is None:
            dir_encoding = spherical_harmonics(view_dirs)
        return density, self.colour_from_features(geo, dir_encoding)

    def rgb(self, points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        """Colour seen along ``view_dirs`` at world points: (N, 3), (N, 3) -> (N, 3)."""
        return self.forward(points, view_dirs)[1]
