"""Shared fixtures: the real config composed with overrides and shrunk, helpers to read videos back."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Sequence

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from dreamvid.cli import register, to_config
from dreamvid.config import Config

register()
torch.set_num_threads(min(2, torch.get_num_threads()))


def make_config(*overrides: str, tiny: bool = True) -> Config:
    """The real config (conf/ + schemas) with overrides; `debug=tiny` shrinks everything."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="dreamvid.conf", version_base=None):
        dcfg = compose(config_name="config", overrides=(["debug=tiny"] if tiny else []) + list(overrides))
    return to_config(dcfg)


def read_video(path: str):
    """(meta, frames) read back with imageio-ffmpeg, a different reader from ours."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(path)
    meta = next(gen)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]
    return meta, frames


def run_cli(args: Sequence[str], cwd: str, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e.pop("HYDRA_FULL_ERROR", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "dreamvid", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=e)


def start_cli(args, cwd, env=None):
    """A render in the background, to be interrupted."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "dreamvid", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, like a command in a terminal


def wait_for_frames(folder, n, proc, timeout=120):
    """Wait until a render's checkpoint folder holds n finished frames."""
    frames = os.path.join(folder, "frames")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.isdir(frames) and len([f for f in os.listdir(frames) if f.endswith(".png") and ".tmp" not in f]) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"render ended early: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError("render made no progress")


@contextlib.contextmanager
def tmpfs(path, options: str):
    """A small tmpfs mounted at `path` for the test (a full disk, a read-only one); skips without root."""
    os.makedirs(path, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip(f"cannot mount a tmpfs ({options}) here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)])


@pytest.fixture
def cfg_factory():
    return make_config


@pytest.fixture
def disk_events(monkeypatch):
    """What is flushed to the disk (os.fsync, the path behind the descriptor), renamed into place
    (os.replace or files.move_no_clobber, the new name) and removed as a folder (os.rmdir), in order.
    Linux only: descriptors are named through /proc."""
    from dreamvid import files

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name a file descriptor")
    seen = []
    fsync, rename, move, rmdir = os.fsync, os.replace, files.move_no_clobber, os.rmdir

    def record_fsync(fd):
        seen.append(("flush", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(a, b):
        seen.append(("rename", os.fspath(b)))
        rename(a, b)

    def record_move(a, b):
        seen.append(("rename", os.fspath(b)))
        return move(a, b)

    def record_rmdir(path, *args, **kwargs):
        seen.append(("remove", os.fspath(path)))
        rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    monkeypatch.setattr(files, "move_no_clobber", record_move)
    monkeypatch.setattr(os, "rmdir", record_rmdir)
    return seen
