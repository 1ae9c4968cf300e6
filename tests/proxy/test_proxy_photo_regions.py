"""The photo's hair colours (:func:`portrait3d.proxy.photo_regions.fit_hair_colours`)."""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.photo_regions import fit_hair_colours, lab_to_rgb, rgb_to_lab

BLACK_HAT = (3.0, 0.5, -0.5)
GOLDEN_HAIR = (36.0, 11.0, 40.0)
HIGHLIGHT = (75.0, 4.0, 10.0)


def _samples(parts: dict[tuple[float, float, float], int], seed: int = 0) -> np.ndarray:
    """(N, 3) Lab samples around each colour, as many as asked, with hair's spread of lightness and hue."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [np.asarray(lab) + rng.normal(0.0, (5.0, 2.0, 2.0), (count, 3)) for lab, count in parts.items()]
    ).astype(np.float32)


def test_a_hat_over_golden_hair_keeps_the_hairs_colour():
    """A black hat over golden hair (55 % and 45 % of the hair split): the golden pixels belong to the hair too, and
    the fill may be as light as they are. One model took the hat's black only: 0.0 of the gold accepted."""
    samples = _samples({BLACK_HAT: 5500, GOLDEN_HAIR: 4500})
    colours = fit_hair_colours(samples)
    assert len(colours.models) == 2
    gold = _samples({GOLDEN_HAIR: 500}, seed=1)
    black = _samples({BLACK_HAT: 500}, seed=2)
    assert colours.accept(gold).mean() > 0.95 and colours.accept(black).mean() > 0.95
    assert colours.models[0].accept(gold).mean() < 0.05  # the first model alone: the hat's
    assert colours.upper_lightness() > GOLDEN_HAIR[0]
    np.testing.assert_allclose(colours.rgb(), lab_to_rgb(np.float32([[BLACK_HAT]]))[0, 0], atol=0.03)
    # Skin's colour is neither.
    skin = rgb_to_lab(np.float32([[[0.8, 0.62, 0.52]]]))[0]
    assert colours.accept(skin)[0] < 0.5


def test_one_tone_of_hair_with_highlights_is_one_model():
    """Dark hair with 6 % highlights (the eval photos' hair rejects 2-8 % of its pixels): one model, and the
    highlights are not hair's usual lightness."""
    colours = fit_hair_colours(_samples({(15.0, 3.0, 5.0): 9400, HIGHLIGHT: 600}))
    assert len(colours.models) == 1
    assert colours.upper_lightness() < 40.0
