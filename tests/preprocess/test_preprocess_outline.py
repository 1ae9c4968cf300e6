"""A person mask that took the whole photo (a dark, blurred frame) is replaced by a head outline from the
landmarks, with one line; a real person mask is kept."""

from __future__ import annotations

import numpy as np

from portrait3d import progress
from portrait3d.preprocess import models, outline, pipeline
from portrait3d.preprocess.hair import BROWS, CHIN, FACE_OVAL


def test_the_sample_mask_is_kept(sample_photo):
    result = pipeline.analyse_photo(sample_photo, pipeline.PreprocessOptions())
    assert not outline.implausible(result.mask)
    assert 0.5 < outline.frame_share(result.mask) < 0.8  # 0.65: head, hair and shoulders, background beside


def test_a_mask_of_the_whole_photo_becomes_a_head_outline(monkeypatch, sample_photo):
    # The segmenter takes all of the photo for the person (as on a dark, motion-blurred photo).
    monkeypatch.setattr(models, "person_probability", lambda image: np.ones(image.shape[:2], np.float32))
    events = []
    with progress.listen(events.append):
        result = pipeline.analyse_photo(sample_photo, pipeline.PreprocessOptions())
    assert any("covers the whole photo" in e.message for e in events if e.kind == "info")
    mask = result.mask > 127
    assert outline.frame_share(mask) < 0.6  # not the frame any more (it was 1.0)
    points = np.asarray(result.record["landmarks"]["points"])[:, :2]
    assert pipeline.face_coverage(result.mask, points) > 0.99
    # A head: above the brows it reaches up by about the face's height, and it is no wider than 1.3 faces.
    size = mask.shape[0]
    brow, chin = points[list(BROWS), 1].min(), points[CHIN, 1]
    rows = np.nonzero(mask.any(axis=1))[0]
    assert brow - 0.9 * (chin - brow) < rows[0] < brow - 0.5 * (chin - brow)
    width = np.ptp(points[list(FACE_OVAL), 0])
    cols = np.nonzero(mask[: int(brow)].any(axis=0))[0]
    assert cols[-1] - cols[0] < 1.3 * width
    assert not mask[: int(brow), : size // 10].any() and not mask[: int(brow), -size // 10 :].any()  # no corners
