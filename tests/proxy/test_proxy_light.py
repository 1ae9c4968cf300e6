"""The photo's light model (:mod:`portrait3d.proxy.light`): fitted on the seen skin, carried onto a turned face's far
side."""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.light import FAR_SIDE_DARKEST, MIN_LIGHT_TEXELS, far_side_gain, fit_light, surface_shading


def _normals(count: int, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal((count, 3))
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_the_light_is_fitted_on_the_marked_texels_only():
    normals = _normals(2000)
    truth = np.array([0.5, 0.2, 0.05, 0.15])
    luminance = truth[0] + normals @ truth[1:]
    weights = np.zeros(len(normals))
    weights[:1000] = 1.0
    luminance[1000:] = 0.0  # unmarked texels (hair, unseen) say nothing about the light
    np.testing.assert_allclose(fit_light(normals, luminance, weights), truth, atol=1e-9)
    weights[MIN_LIGHT_TEXELS - 1 :] = 0.0
    assert fit_light(normals, luminance, weights) is None


def test_the_far_side_is_darkened_as_the_light_leaves_it_and_never_brightened():
    light = np.array([0.5, 0.3, 0.0, 0.2])  # ambient, and a light from +x and the front
    normals = np.array([[-0.7, 0.0, 0.7], [0.0, 0.0, 1.0], [0.7, 0.0, 0.7], [-1.0, 0.0, 0.0]])[None]
    gain = far_side_gain(normals, light)[0]
    # Turned away from the light: its own light over the light at its mirror image, (0.5 - 0.21 + 0.14) / (0.5 +
    # 0.21 + 0.14); on the mid-line and on the lit side, as the mirror image is.
    assert np.isclose(gain[0], 0.43 / 0.85)
    assert gain[1] == 1.0 and gain[2] == 1.0
    assert gain[3] == FAR_SIDE_DARKEST  # (0.5 - 0.3) / (0.5 + 0.3) = 0.25, held at the darkest
    half = far_side_gain(normals, light, share=0.5)[0]
    assert np.isclose(half[0], 0.5 * (1.0 + gain[0]))
    np.testing.assert_array_equal(far_side_gain(normals, None), 1.0)
    np.testing.assert_array_equal(far_side_gain(normals, light, share=0.0), 1.0)
    # A light from the far side (-x) leaves the near side darker; its mirror image is not brightened.
    assert far_side_gain(normals, light * [1.0, -1.0, 1.0, 1.0])[0, 0] == 1.0


def test_the_fills_shading_is_relative_to_the_seen_skin_and_keeps_an_ambient_floor():
    normals = _normals(4000, seed=1).reshape(40, 100, 3)
    luminance = 0.6 + normals @ np.array([0.3, 0.0, 0.1])
    shade = surface_shading(normals, luminance, np.ones(normals.shape[:-1]))
    # Relative to the ambient term (0.6), with each direction's part held to 0.35 of it: 1 + n . (0.35, 0, 0.1667).
    expected = np.maximum(1.0 + normals @ np.array([0.35, 0.0, 0.1 / 0.6]), 0.6)
    np.testing.assert_allclose(shade, expected, atol=1e-5)
    assert shade.min() >= 0.6 - 1e-6
