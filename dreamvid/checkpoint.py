"""Checkpoints: a render's finished frames and the state its next frame needs, in `OUTPUT.state/`.

Frames are stored losslessly as PNG and the state (tensors, RNG-free: every frame's randomness is
derived from the seed and the frame index) with torch.save, each written under a temporary name
and renamed, so a render killed at any moment resumes from its last finished frame.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .model import DreamvidError

STATE_SUFFIX = ".state"
STATE_FILE = "state.pt"

# Settings that do not change the frames a render produces.
_NOT_IN_KEY = ("progress", "resume", "overwrite", "device", "output")


def state_dir(output: str) -> str:
    return output.rstrip("/").rstrip(os.sep) + STATE_SUFFIX


def _file_digest(path: str) -> str:
    """Size, and the hash of the first and last MiB: cheap for long clips, catches a changed input."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


def render_key(config: Dict[str, Any], files: Tuple[Optional[str], ...] = ()) -> str:
    """What identifies a render: its settings and its input files."""
    settings = {k: v for k, v in config.items() if k not in _NOT_IN_KEY}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        if path and os.path.isfile(path):
            h.update(_file_digest(path).encode())
    return h.hexdigest()[:16]


class Checkpoint:
    def __init__(self, output: str, key: str, config: Optional[Dict[str, Any]] = None):
        self.dir = state_dir(output)
        self.key, self.config = key, config or {}

    @property
    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.dir, STATE_FILE))

    def load(self) -> Optional[Tuple[int, Any]]:
        """(next frame index, state) of a matching checkpoint, None when there is none."""
        if not self.exists:
            return None
        data = torch.load(os.path.join(self.dir, STATE_FILE), map_location="cpu", weights_only=False)
        if data.get("key") != self.key:
            raise DreamvidError(f"{self.dir} holds the checkpoint of a different render (settings or input "
                                f"changed): resume it with its own settings, or delete that folder to start again")
        return int(data["next"]), data["state"]

    def frame_path(self, index: int) -> str:
        return os.path.join(self.dir, "frames", f"frame_{index:06d}.png")

    def read_frame(self, index: int) -> np.ndarray:
        import cv2

        img = cv2.imread(self.frame_path(index), cv2.IMREAD_COLOR)
        if img is None:
            raise DreamvidError(f"checkpoint frame {index} is missing or damaged in {self.dir}: "
                                f"delete that folder to start again")
        return np.ascontiguousarray(img[..., ::-1])

    def save(self, index: int, frame: np.ndarray, state: Any) -> None:
        """Record frame `index` as finished, with the state that frame index + 1 needs."""
        import cv2

        os.makedirs(os.path.dirname(self.frame_path(index)), exist_ok=True)
        path = self.frame_path(index)
        tmp = path + ".tmp.png"
        try:
            ok = cv2.imwrite(tmp, np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        except cv2.error:
            ok = False
        if not ok:
            self._remove(tmp)
            raise DreamvidError(f"cannot write checkpoint frame {path}: {why_unwritable(self.dir)}")
        os.replace(tmp, path)
        tmp = os.path.join(self.dir, STATE_FILE + ".tmp")
        try:
            torch.save({"key": self.key, "next": index + 1, "state": state, "config": self.config}, tmp)
        except (OSError, RuntimeError):
            self._remove(tmp)
            raise DreamvidError(f"cannot write checkpoint in {self.dir}: {why_unwritable(self.dir)}") from None
        os.replace(tmp, os.path.join(self.dir, STATE_FILE))

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def why_unwritable(folder: str) -> str:
    """A short reason a write failed: a full disk, or permissions."""
    try:
        if shutil.disk_usage(folder).free < (4 << 20):
            return "the disk is full: free some space, then run the same command again to resume"
    except OSError:
        pass
    return "the folder is not writable"


def find_state(path: str) -> str:
    """The checkpoint folder for `resume=PATH`: an output path, its .state folder, or a run folder."""
    path = os.path.abspath(os.path.expanduser(path)).rstrip(os.sep)
    candidates = []
    if path.endswith(STATE_SUFFIX):
        candidates = [path]
    elif os.path.isdir(state_dir(path)):
        candidates = [state_dir(path)]
    elif os.path.isdir(path):
        candidates = sorted(glob.glob(os.path.join(glob.escape(path), "*" + STATE_SUFFIX)))
    candidates = [c for c in candidates if os.path.isfile(os.path.join(c, STATE_FILE))]
    if not candidates:
        raise DreamvidError(f"no checkpoint to resume at {path} (an interrupted render leaves OUTPUT{STATE_SUFFIX}/)")
    if len(candidates) > 1:
        raise DreamvidError(f"several checkpoints in {path}: pass one of them as resume=: {', '.join(candidates)}")
    return candidates[0]


def saved_config(state_folder: str) -> Dict[str, Any]:
    data = torch.load(os.path.join(state_folder, STATE_FILE), map_location="cpu", weights_only=False)
    return data.get("config") or {}
