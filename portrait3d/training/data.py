"""Training data: multi-view heads with PanoHead cameras, in the run-folder layout.

One subject is a folder laid out like a run folder after its views stage::

    SUBJECT/
      input/aligned.png        the front photo: first appearance reference (both models)
      views/cameras.json       PanoHead labels (``dataset.json`` format) of the views, in trajectory order
      views/NNNN.png           the views (ground truth), any names listed in cameras.json
      views/back.png           optional back view: second reference (orbit) and target (back-view model);
                               default: the view whose camera is most nearly behind the head (world -z)
      proxy/conditions/NNNN.png  one condition render (C's input) per view, named as the view

A dataset is one subject folder or a folder of subject folders (every sub-folder with ``views/cameras.json``).

Samples: the orbit model sees windows of ``window`` consecutive views along the trajectory (a window starts at
every view and wraps around the end), with the front photo and the back view as references; the back-view model
sees one sample per subject: the front photo as reference, the back view as target and the back camera's
condition render. Images are RGB (alpha dropped, as the stages read them) resized to the training size, in
[-1, 1].

:func:`convert_nerfstudio` turns a nerfstudio ``transforms.json`` capture into one subject folder.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from portrait3d import cameras
from portrait3d.errors import UserError

FRONT = "input/aligned.png"
VIEWS = "views"
CAMERAS = "views/cameras.json"
BACK = "views/back.png"
CONDITIONS = "proxy/conditions"


@dataclass(frozen=True)
class Subject:
    """One multi-view head on disk."""

    root: Path
    """The subject folder."""
    views: tuple[str, ...]
    """View file names in trajectory order."""
    back_name: str
    """The view whose camera is most nearly behind the head (its condition is the back-view model's)."""

    def view(self, name: str) -> Path:
        return self.root / VIEWS / name

    def condition(self, name: str) -> Path:
        return self.root / CONDITIONS / name

    @property
    def front(self) -> Path:
        return self.root / FRONT

    @property
    def back(self) -> Path:
        """``views/back.png`` when there is one, else the view behind the head."""
        explicit = self.root / BACK
        return explicit if explicit.is_file() else self.view(self.back_name)


def back_camera_name(named: dict[str, cameras.Camera]) -> str:
    """Name of the camera most nearly behind the head (smallest z of its unit position)."""
    return min(named, key=lambda n: float(named[n].position[2] / max(np.linalg.norm(named[n].position), 1e-9)))


def read_subject(root: Path) -> Subject:
    """Check one subject folder and list its views; one-line errors name the missing file."""
    named = cameras.read_labels(root / CAMERAS)
    if not named:
        raise UserError(f"{root / CAMERAS}: no cameras")
    if not (root / FRONT).is_file():
        raise UserError(f"{root}: missing {FRONT} (the front photo)")
    missing = [n for n in named if not (root / VIEWS / n).is_file()]
    missing += [f"{CONDITIONS}/{n}" for n in named if not (root / CONDITIONS / n).is_file()]
    if missing:
        raise UserError(f"{root}: missing {', '.join(missing[:3])} ({len(missing)} in all)")
    return Subject(root, tuple(named), back_camera_name(named))


def find_subjects(data: str | Path) -> list[Subject]:
    """The subjects of a dataset: ``data`` itself, or its sub-folders that hold ``views/cameras.json``."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"--data {data}: no such folder")
    if (data / CAMERAS).is_file():
        return [read_subject(data)]
    roots = sorted(p for p in data.iterdir() if (p / CAMERAS).is_file())
    if not roots:
        raise UserError(f"--data {data}: no {CAMERAS} in it or in its sub-folders (see the data layout in the README)")
    return [read_subject(r) for r in roots]


def load_image(path: Path, size: int) -> torch.Tensor:
    """An image file as a (3, size, size) float tensor in [-1, 1] (alpha dropped, resized)."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{path}: cannot read the image ({exc})") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy()).permute(2, 0, 1)
    return array / 127.5 - 1.0


class OrbitWindows(torch.utils.data.Dataset):
    """Windows of consecutive views: item ``views`` (V, 3, S, S), ``conditions`` (V, 3, S, S), ``references``
    (2, 3, S, S) = front photo, back view."""

    def __init__(self, subjects: list[Subject], window: int, size: int):
        short = [s.root for s in subjects if len(s.views) < window]
        if short:
            raise UserError(f"{short[0]}: fewer views than the window of {window}")
        self.subjects, self.window, self.size = subjects, window, size
        self.index = [(i, start) for i, s in enumerate(subjects) for start in range(len(s.views))]

    def __len__(self) -> int:
        return len(self.index)

    def names(self, item: int) -> tuple[Subject, list[str]]:
        """The subject and the view names of window ``item``."""
        subject_index, start = self.index[item]
        subject = self.subjects[subject_index]
        count = len(subject.views)
        return subject, [subject.views[(start + k) % count] for k in range(self.window)]

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        subject, names = self.names(item)
        return {
            "views": torch.stack([load_image(subject.view(n), self.size) for n in names]),
            "conditions": torch.stack([load_image(subject.condition(n), self.size) for n in names]),
            "references": torch.stack([load_image(subject.front, self.size), load_image(subject.back, self.size)]),
        }


class BackViews(torch.utils.data.Dataset):
    """One sample per subject: ``views`` (1, 3, S, S) the back view, ``conditions`` (1, 3, S, S) its condition
    render, ``references`` (1, 3, S, S) the front photo."""

    def __init__(self, subjects: list[Subject], size: int):
        self.subjects, self.size = subjects, size

    def __len__(self) -> int:
        return len(self.subjects)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        subject = self.subjects[item]
        return {
            "views": load_image(subject.back, self.size)[None],
            "conditions": load_image(subject.condition(subject.back_name), self.size)[None],
            "references": load_image(subject.front, self.size)[None],
        }


class StepBatchSampler(torch.utils.data.Sampler):
    """Infinite, deterministic batches: micro-step ``m`` of process ``rank`` always gets the same indices.

    Positions ``(m * world + rank) * batch_size ...`` of the endless concatenation of per-epoch permutations
    (seeded by ``seed`` and the epoch), so that a run resumed at micro-step ``start`` sees exactly the batches the
    uninterrupted run saw, and the processes of a multi-GPU run see disjoint samples.
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        if length < 1:
            raise UserError("the dataset has no samples")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self._epoch, self._order = -1, None

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.length)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.length, generator=generator).tolist()
        return self._order[offset]

    def batch(self, micro_step: int) -> list[int]:
        first = (micro_step * self.world + self.rank) * self.batch_size
        return [self._index(p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        micro_step = self.start
        while True:
            yield self.batch(micro_step)
            micro_step += 1

    def __len__(self) -> int:
        return 2**62  # endless; DataLoader only needs a number


# --- nerfstudio captures --------------------------------------------------------------------------------------
def _centre_and_scale(poses: list[cameras.Camera]) -> tuple[np.ndarray, float]:
    """The point nearest to every optical axis (least squares) and the scale that puts the cameras at the
    PanoHead distance from it."""
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for cam in poses:
        d = cam.forward
        projector = np.eye(3) - np.outer(d, d)
        a += projector
        b += projector @ cam.position
    centre = np.linalg.lstsq(a, b, rcond=None)[0]
    distance = float(np.mean([np.linalg.norm(c.position - centre) for c in poses]))
    return centre, cameras.PANOHEAD_RADIUS / max(distance, 1e-9)


def convert_nerfstudio(
    transforms: str | Path,
    out: str | Path,
    size: int = 512,
    conditions: str | Path | None = None,
    front: str | None = None,
) -> Path:
    """Write one subject folder from a nerfstudio capture.

    The capture's world must be y up with the face toward +z (PanoHead's axes; ``portrait3d dataset`` writes
    such files); the cameras are re-centred on the point nearest to every optical axis and scaled to PanoHead's
    2.7-unit distance, then ordered by yaw along the trajectory. Every image is centre-cropped to a square and
    resized to ``size``.

    Args:
        transforms: the capture's ``transforms.json``.
        out: the subject folder to write (new, empty, or an earlier output of this function: no other is replaced).
        size: side of the written images.
        conditions: folder of condition renders named like the frames' files (``proxy/conditions/``); without
            one, the subject needs ``proxy/conditions/`` before it can train C (render them with the proxy).
        front: file path (as in ``transforms.json``) of the front photo; default: the frame closest to +z.
    """
    from portrait3d.run import atomic_dir, check_replaceable, mark_owned

    check_replaceable(out, "train convert-nerfstudio")  # replaces only a subject folder it wrote itself
    transforms = Path(transforms)
    try:
        document = json.loads(transforms.read_text())
        frames = cameras.cameras_from_transforms(document)
    except FileNotFoundError as exc:
        raise UserError(f"{transforms}: no such file") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{transforms}: not a nerfstudio transforms.json ({exc})") from exc
    if not frames:
        raise UserError(f"{transforms}: no frames")
    centre, scale = _centre_and_scale([cam for _, cam in frames])
    placed = []
    for path, cam in frames:
        c2w = cam.cam2world.copy()
        c2w[:3, 3] = (c2w[:3, 3] - centre) * scale
        placed.append((path, cameras.Camera(c2w, cam.intrinsics)))
    placed.sort(key=lambda item: math.atan2(item[1].position[0], item[1].position[2]) % (2 * math.pi))
    if front is None:
        front = max(placed, key=lambda item: item[1].position[2] / np.linalg.norm(item[1].position))[0]
    elif front not in [p for p, _ in placed]:
        raise UserError(f"--front {front}: not a frame of {transforms}")
    base = transforms.parent

    def square(source: Path) -> Image.Image:
        try:
            with Image.open(source) as image:
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"{source}: cannot read the image ({exc})") from exc
        side = min(rgb.size)
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        return rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)

    out = Path(out)
    with atomic_dir(out) as tmp:
        for folder in ("input", VIEWS, CONDITIONS):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        named = {}
        for index, (path, cam) in enumerate(placed):
            name = f"{cameras.view_name(index)}.png"
            square(base / path).save(tmp / VIEWS / name)
            if conditions is not None:
                condition = Path(conditions) / Path(path).name
                if not condition.is_file():
                    raise UserError(f"--conditions {conditions}: no {Path(path).name}")
                square(condition).save(tmp / CONDITIONS / name)
            if path == front:
                shutil.copy2(tmp / VIEWS / name, tmp / FRONT)
            named[name] = cam
        cameras.write_labels(tmp / CAMERAS, named)
        mark_owned(tmp, "train convert-nerfstudio")
    return out
