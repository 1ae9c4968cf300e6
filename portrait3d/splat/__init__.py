"""Real-time splats: the head as 3D Gaussians, distilled from the run, in PLY, SPZ and glTF.

``gaussians`` (the parameter set, activations, spherical harmonics), ``rasterize`` (pure-torch tiled
rasteriser; gsplat on CUDA), ``distill`` (seed on the surface, fit to the views), ``ply``, ``spz``,
``gltf`` (writers and readers), ``stage`` (the ``export-splat`` stage).
"""

from .stage import STAGE, TARGETS, SplatOptions, stage

__all__ = ["STAGE", "TARGETS", "SplatOptions", "stage"]
