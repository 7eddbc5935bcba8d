"""Where a render dreams: `dream.mask`, a picture or a clip (or folder of frames) as long as the render.

White dreams, black keeps what was there without the dream (a clip's source frame; in a zoom the
picture moved as it would be without dreaming), grey in between. The mask is read as luminance, resized
to the render, and its edges softened by a Gaussian of FEATHER of the picture's shorter side, so that a
hard-edged mask does not cut a seam into the dream; `dream.mask_strength` (a schedule) scales it.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from .errors import DreamvidError

FEATHER = 0.01  # sigma of the edges' blur, as a share of the shorter side (at least one pixel)


def soften(gray: np.ndarray) -> np.ndarray:
    """(H, W) 0..1 mask with its edges blurred."""
    import cv2

    sigma = max(1.0, FEATHER * min(gray.shape[:2]))
    return np.clip(cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma), 0.0, 1.0)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


class Mask:
    """dream.mask at a render's size: `at(t)` is frame t's mask, (1, 1, H, W) on `device`, 0..1.

    A picture serves every frame; a clip or folder gives its frame t (read forward from `start`, the first
    frame asked for: a resumed render starts there) and must have as many frames as the render.
    """

    def __init__(self, path: str, size: Tuple[int, int], frames: int, device: torch.device, start: int = 0):
        from .images import fit_size, read_image
        from .video import CLIP_EXTS, probe, read_frames

        self.path, self.device = path, device
        w, h = size
        self._still: Optional[torch.Tensor] = None
        self._frames: Optional[Iterator[np.ndarray]] = None
        if os.path.splitext(path)[1].lower() in CLIP_EXTS or os.path.isdir(path):
            meta = probe(path)
            if meta.frames < frames:
                raise DreamvidError(f"dream.mask={path} has {meta.frames} frames, but the render has {frames}: a mask "
                                    f"clip must be as long as the render (or give one picture)")
            self._frames = read_frames(path, (w, h), meta=meta, start=start)[1]
            self._next = start
        else:
            self._still = self._tensor(fit_size(read_image(path, "dream.mask"), w, h))

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(soften(_luminance(rgb)))[None, None].to(self.device)

    def at(self, t: int) -> torch.Tensor:
        if self._still is not None:
            return self._still
        if t < self._next - 1 or self._frames is None:
            raise DreamvidError(f"dream.mask={self.path}: frame {t} asked for after frame {self._next - 1}")
        while self._next <= t:
            frame = next(self._frames, None)
            if frame is None:
                raise DreamvidError(f"dream.mask={self.path} ended before frame {t}")
            self._last, self._next = self._tensor(frame), self._next + 1
        return self._last


def composite(dreamed: torch.Tensor, kept: torch.Tensor, mask: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """The dream where the mask is white, `kept` where it is black, mixed in between (all (1, C, H, W))."""
    m = mask * float(strength)
    return kept + m * (dreamed - kept)
