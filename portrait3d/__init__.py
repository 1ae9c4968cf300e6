"""portrait3d: one portrait photo to a 360-degree view set, a NeRF and a textured 3D head asset."""

__version__ = "0.1.0"
