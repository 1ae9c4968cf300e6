"""A head that moves: ARKit blendshapes, visemes, eyes, mouth and a skeleton on the exported mesh.

``stage(options)`` builds the run's ``rig`` stage; ``build.rig_head`` rigs one GLB.
"""

from .stage import RigOptions, stage

__all__ = ["RigOptions", "stage"]
