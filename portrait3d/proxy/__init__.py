"""The proxy head: a closed template head fitted to the photo's landmarks, textured from the photo,
rendered at the orbit cameras (the weight-free view generator, and the diffusion path's conditions).

Library entry points:

- :func:`build_proxy` ``(run, options)``: the ``proxy`` stage (writes ``RUN/proxy/``); its
  :class:`~portrait3d.runner.Stage` is built by :func:`portrait3d.proxy.stage.stage`, the proxy
  generator's ``views`` stage by :func:`portrait3d.proxy.stage.views_stage`;
- :func:`proxy_mesh` ``(run, options=None) -> trimesh.Trimesh``: the textured head of a run;
- :func:`build_head`: the same from arrays (photo, camera, mask, landmarks);
- :func:`contact_sheet`: images on a labelled grid.
"""

from portrait3d.proxy.head import ProxyHead, build_head
from portrait3d.proxy.sheet import contact_sheet
from portrait3d.proxy.stage import ProxyOptions, build_proxy, proxy_mesh, read_inputs

__all__ = ["ProxyHead", "ProxyOptions", "build_head", "build_proxy", "contact_sheet", "proxy_mesh", "read_inputs"]
