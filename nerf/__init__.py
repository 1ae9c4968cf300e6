"""NeRF side of portrait3d: nerfstudio dataset, instant-NGP fit, mesh extraction and export."""
