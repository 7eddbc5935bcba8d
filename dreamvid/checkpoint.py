"""Checkpoints: a render's finished frames and the state its next frame needs, in `OUTPUT.state/`.

Frames are stored losslessly as PNG, and the state (tensors and numbers, RNG-free: every frame's
randomness is derived from the seed and the frame index) in one `.npz` file, its arrays beside a JSON
description, read back with `allow_pickle=False`: reading a checkpoint never runs code, whoever made
the file. Each is written under a temporary name and renamed, so a render killed at any moment
resumes from its last saved state. `CheckpointWriter` does the writing in a background thread, in
order, while the next frame is dreamed; it saves the state with the first frame, then at most every
few seconds and at the end, so that a large frame's state (its carried dream in float32) does not
cost a write per frame. Frames after the last saved state are dreamed again on resume, identically.

The folder is dreamvid's only if it carries dreamvid's marker (`files.claim_folder`): a folder of that
name that the user made is refused, or with overwrite=true rendered beside, and what dreamvid removes
there is only what it wrote, by name.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import files
from .errors import DreamvidError
from .video import picture_files

try:
    import fcntl
except ImportError:  # not POSIX: renders of one output are not guarded against each other
    fcntl = None  # type: ignore[assignment]

STATE_SUFFIX = ".state"
STATE_FILE = "state.npz"
LOCK_FILE = "lock"  # held (flock) by the process rendering this output; holds its pid
# What an earlier dreamvid kept in a checkpoint folder (its state a pickle, which is never read)
EARLIER = re.compile(r"(state\.pt(\.tmp)?|lock|frames|partial(\.\w+)?)")
# Raised when a release dreams the same settings into other frames (2: folded batch norms and the step's
# zero guard; 3: video's coherence.new_step and its smaller coherence.step), or stores them otherwise (4:
# no pickle), so that a checkpoint of an earlier one is not resumed into a mixed render.
FORMAT = 4

# Settings that do not change the frames a render produces. The input and guide files count by their
# contents (`render_key`'s inputs), not by the path they were given as.
_NOT_IN_KEY = ("progress", "resume", "overwrite", "device", "output", "input")
_NOT_IN_KEY_SECTIONS = {"flow": ("workers",), "dream": ("guide",)}


def state_dir(output: str) -> str:
    return output.rstrip("/").rstrip(os.sep) + STATE_SUFFIX


def _file_digest(path: str, window: int = 1 << 20) -> str:
    """Size, and the hash of the first and last `window` bytes: cheap for long clips, catches a changed input."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(window))
        if size > 2 * window:
            f.seek(-window, os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


def render_key(config: Dict[str, Any], inputs: Tuple[Optional[str], ...] = ()) -> str:
    """What identifies a render: its settings and its input files."""
    settings = {k: v for k, v in config.items() if k not in _NOT_IN_KEY}
    for section, names in _NOT_IN_KEY_SECTIONS.items():
        if isinstance(settings.get(section), dict):
            settings[section] = {k: v for k, v in settings[section].items() if k not in names}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(f"format {FORMAT}".encode())
    for path in inputs:
        if path and os.path.isfile(path):
            h.update(_file_digest(path).encode())
        elif path and os.path.isdir(path):  # a folder of frames: each picture's name, size, first and last 64 KiB
            for picture in picture_files(path):
                h.update(os.path.basename(picture).encode() + _file_digest(picture, 1 << 16).encode())
    return h.hexdigest()[:16]


# -- the state file: arrays and JSON, never a pickle --------------------------------------------------

def _pack(value: Any, arrays: List[np.ndarray]) -> Any:
    """value as JSON, with each tensor or array replaced by a reference to `arrays` (where it is put)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        arrays.append((t.float() if t.dtype == torch.bfloat16 else t).numpy())
        return {"$tensor": len(arrays) - 1}
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {"$array": len(arrays) - 1}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"$tuple": [_pack(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_pack(v, arrays) for v in value]
    if isinstance(value, dict):
        if any(not isinstance(k, str) or k.startswith("$") for k in value):
            raise TypeError(f"a checkpoint's state has names for keys, got {list(value)}")
        return {k: _pack(v, arrays) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def _unpack(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(v, arrays) for v in value]
    if isinstance(value, dict):
        if "$tensor" in value:
            return torch.from_numpy(np.array(arrays[f"a{int(value['$tensor'])}"]))
        if "$array" in value:
            return np.array(arrays[f"a{int(value['$array'])}"])
        if "$tuple" in value:
            return tuple(_unpack(v, arrays) for v in value["$tuple"])
        return {k: _unpack(v, arrays) for k, v in value.items()}
    return value


def write_state_file(path: str, data: Dict[str, Any]) -> None:
    """`data` (tensors, arrays, numbers, strings, lists, tuples, dicts) as one .npz at `path`."""
    arrays: List[np.ndarray] = []
    meta = json.dumps(_pack(data, arrays)).encode()
    with open(path, "wb") as f:
        np.savez(f, meta=np.frombuffer(meta, np.uint8), **{f"a{i}": a for i, a in enumerate(arrays)})


def read_state_file(path: str) -> Dict[str, Any]:
    """What `write_state_file` wrote; nothing in the file is ever run (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        data = _unpack(json.loads(bytes(z["meta"]).decode()), z)
    if not isinstance(data, dict):
        raise ValueError("not a dreamvid state")
    return data


def _to_host(value: Any) -> Any:
    """value with every tensor in it (in dicts, lists, tuples) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    return value


# What a checkpoint folder holds of dreamvid's own (besides the marker): the output while it is encoded
# (video.SCRATCH_NAME, and its audio pass's .mux) and a stopped render's partial video among them
_OWN = re.compile(r"(lock|state\.npz(\.tmp)?|frames|output\.partial(\.mux)?|config\.partial|partial(\.\w+)?)")


def _ours(name: str) -> bool:
    return bool(_OWN.fullmatch(name))


class Checkpoint:
    def __init__(self, output: str, key: str, config: Optional[Dict[str, Any]] = None, overwrite: bool = False):
        self.output, self.dir = output, state_dir(output)
        self.key, self.config, self.overwrite = key, config or {}, overwrite
        self._lock: Optional[int] = None
        self._unflushed: List[str] = []  # frames renamed into place since the last state was written

    def _earlier(self, names: List[str]) -> Optional[str]:
        if names and all(EARLIER.fullmatch(n) for n in names) and any(n.startswith("state.pt") or n == "frames"
                                                                        for n in names):
            return (f"{self.dir} holds the checkpoint of an earlier dreamvid, which this one does not read (it "
                    f"was saved as a pickle): delete that folder to start again")
        return None

    def claim(self) -> None:
        """Make the checkpoint folder dreamvid's (or refuse in one line: see `claim_folder`)."""
        files.claim_folder(self.dir, f"the checkpoint of {os.path.basename(self.output.rstrip('/'))}", _ours,
                     self.overwrite, self._earlier)

    def lock(self) -> None:
        """Claim this output for this process, or refuse: two renders of one output would delete each
        other's files. The lock goes with the process, however it ends, so a killed render resumes."""
        folder = os.path.dirname(os.path.abspath(self.dir))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise DreamvidError(f"cannot create output folder {folder}: {e.strerror}") from None
        if fcntl is None:
            self.claim()
            return
        path = os.path.join(self.dir, LOCK_FILE)
        for _ in range(10):  # until the file locked is the one at `path` (another render may remove it)
            self.claim()
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder went between its claim and the open: claim it again
                continue
            except OSError as e:
                self._remove_if_bare()
                raise DreamvidError(f"cannot write in output folder {folder}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)  # a file system without locks (some cluster mounts): render unguarded
                    return
                pid = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise DreamvidError(f"{self.output} is being rendered by another dreamvid"
                                    f"{f' (process {pid})' if pid else ''}: let it finish, or choose another "
                                    f"output=") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino and files.owned(self.dir)
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise DreamvidError(f"cannot claim {self.output}: its checkpoint folder keeps changing")
        self._lock = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass  # the pid only makes the refusal of a second render more helpful

    def unlock(self) -> None:
        """Release the claim; a checkpoint with nothing to resume from (no state: no frame was finished)
        goes too, while still claimed."""
        if not self.exists:
            self.clear(quiet=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _remove_if_bare(self) -> None:
        try:
            if set(os.listdir(self.dir)) <= {files.MARKER, LOCK_FILE}:
                files.release_folder(self.dir, _ours)
        except OSError:
            pass

    @property
    def scratch(self) -> str:
        """The folder where the render's own temporary files go (its output while encoded, its config)."""
        return self.dir

    @property
    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.dir, STATE_FILE))

    def load(self) -> Optional[Tuple[int, Any]]:
        """(next frame index, state) of a matching checkpoint, None when there is none."""
        if not self.exists:
            return None
        data = _load_state_file(self.dir)
        if data.get("key") != self.key:
            if data.get("format", 1) != FORMAT:
                raise DreamvidError(f"{self.dir} holds the checkpoint of an earlier dreamvid, which dreams these "
                                    f"settings into other frames: delete that folder to start again")
            raise DreamvidError(f"{self.dir} holds the checkpoint of a different render (settings or input "
                                f"changed): resume it with its own settings, or delete that folder to start again")
        return int(data["next"]), data["state"]

    def frame_path(self, index: int) -> str:
        return os.path.join(self.dir, "frames", f"frame_{index:06d}.png")

    def read_frame(self, index: int, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """Finished frame `index`, (H, W, 3) uint8 RGB; size=(width, height) it must have."""
        import cv2

        path = self.frame_path(index)
        img = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
        if img is None or (size is not None and img.shape[:2] != (size[1], size[0])):
            raise DreamvidError(f"checkpoint frame {index} is missing or damaged in {self.dir}: "
                                f"delete that folder to start again")
        return np.ascontiguousarray(img[..., ::-1])

    def save(self, index: int, frame: np.ndarray, state: Any) -> None:
        """Record frame `index` as finished, with the state that frame index + 1 needs."""
        self.save_frame(index, frame)
        self.save_state(index, state)

    def _ensure(self) -> None:
        if not os.path.isdir(self.dir):
            self.claim()

    def save_frame(self, index: int, frame: np.ndarray) -> None:
        from .images import encode_png

        self._ensure()
        path = self.frame_path(index)
        tmp = path + ".tmp.png"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:  # encoded in memory: a full disk is an OSError here, not libpng's noise
                f.write(encode_png(frame, fast=True))
            os.replace(tmp, path)  # flushed to the disk with the next state, which names it
            self._unflushed.append(path)
        except OSError:
            self._remove(tmp)
            raise DreamvidError(f"cannot write checkpoint frame {path}: {why_unwritable(self.dir)}") from None

    def save_state(self, index: int, state: Any) -> None:
        """Frames 0..index are saved; `state` is what frame index + 1 needs.

        Tensors in it may be on the GPU: they are copied to the host here (in the writer's thread, and only
        for the states that are written), so they must not be changed in place after `add`. The copy
        comes first, so that a GPU error is reported as itself, not as an unwritable folder.
        """
        state = _to_host(state)
        self._ensure()
        tmp = os.path.join(self.dir, STATE_FILE + ".tmp")
        try:
            write_state_file(tmp, {"key": self.key, "format": FORMAT, "next": index + 1, "state": state,
                                   "config": self.config})
        except OSError:
            self._remove(tmp)
            raise DreamvidError(f"cannot write checkpoint in {self.dir}: {why_unwritable(self.dir)}") from None
        # The frames this state counts as finished reach the disk before it does: after a power cut the
        # state never names an empty frame.
        files.flush_all(self._unflushed)
        if self._unflushed:
            files.flush(os.path.dirname(self._unflushed[-1]))
        self._unflushed = []
        files.replace(tmp, os.path.join(self.dir, STATE_FILE))

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass

    def clear(self, quiet: bool = False) -> None:
        """Remove what dreamvid wrote in the checkpoint folder, and the folder unless it holds anything else."""
        left = files.release_folder(self.dir, _ours)
        if left and not quiet:
            warnings.warn(f"{self.dir} is left with {files.listing(left)} in it, which dreamvid did not write",
                          stacklevel=2)


class CheckpointWriter:
    """Writes a render's checkpoint in a background thread, in order, a bounded number of frames behind.

    `add` queues frame `index` and its state (raising any earlier write's error); the state is
    written with the first frame, then when `every` seconds have passed since the last one (0:
    every frame). `close` writes what is queued and the latest state; after an error elsewhere,
    `close(quiet=True)` does the same as far as it can without raising.
    """

    def __init__(self, checkpoint: Checkpoint, every: float = 5.0, backlog: int = 4):
        self.ck, self.every, self.backlog = checkpoint, every, backlog
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dreamvid-checkpoint")
        self._pending: Deque[Future] = deque()
        self._last_state = -float("inf")
        self._latest: Optional[Tuple[int, Any]] = None  # the newest state not yet written
        self._failed = False

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            if self._failed:  # after a failed write nothing later is written: a state never outruns its frames
                return
            try:
                fn(*args)
            except BaseException:
                self._failed = True
                raise

        self._pending.append(self._pool.submit(run))

    def add(self, index: int, frame: np.ndarray, state: Any) -> None:
        self._collect(block=len(self._pending) >= self.backlog)
        self._submit(self.ck.save_frame, index, frame)
        now = time.monotonic()
        if now - self._last_state >= self.every:
            self._last_state = now
            self._latest = None
            self._submit(self.ck.save_state, index, state)
        else:
            self._latest = (index, state)

    def _collect(self, block: bool) -> None:
        """Drop finished writes, raising the first error; with block, wait for the oldest one first."""
        if block and self._pending:
            self._pending[0].result()
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()

    def close(self, quiet: bool = False) -> None:
        try:
            if self._latest is not None:
                self._submit(self.ck.save_state, *self._latest)
                self._latest = None
            while self._pending:
                try:
                    self._pending.popleft().result()
                except Exception:  # noqa: BLE001 - quiet: the caller is already failing
                    if not quiet:
                        raise
        finally:
            self._pool.shutdown(wait=True)


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
        earlier = os.path.join(state_dir(path), "state.pt")
        if os.path.isfile(earlier):
            raise DreamvidError(f"{state_dir(path)} holds the checkpoint of an earlier dreamvid, which this one "
                                f"does not read (it was saved as a pickle): delete that folder to start again")
        if os.path.exists(path) and not path.endswith(STATE_SUFFIX) and not os.path.isdir(path) or \
                os.path.isfile(path + ".yaml"):
            raise DreamvidError(f"{path} is complete: there is nothing to resume (its checkpoint is removed when "
                                f"a render finishes)")
        raise DreamvidError(f"no checkpoint to resume at {path} (an interrupted render leaves OUTPUT{STATE_SUFFIX}/)")
    if len(candidates) > 1:
        raise DreamvidError(f"several checkpoints in {path}: pass one of them as resume=: {', '.join(candidates)}")
    return candidates[0]


def saved_config(state_folder: str) -> Dict[str, Any]:
    return _load_state_file(state_folder).get("config") or {}


def _load_state_file(folder: str) -> Dict[str, Any]:
    try:
        data = read_state_file(os.path.join(folder, STATE_FILE))
    except Exception:  # noqa: BLE001 - a truncated or garbled file, whatever numpy or json says
        data = None
    if not isinstance(data, dict):
        raise DreamvidError(f"the checkpoint in {folder} is damaged ({STATE_FILE} cannot be read): "
                            f"delete that folder to start again")
    return data
