"""Still images: reading any common image into RGB, writing one, the built-in starting image, tensor conversion."""
from __future__ import annotations

import errno
import os
import struct
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import files
from .errors import DreamvidError

# The picture files an output may be: one still (PNG keeps its text in tEXt chunks, JPEG in its comment).
STILL_EXTS = (".png", ".jpg", ".jpeg", ".webp")
JPEG_COMMENT_MAX = 65533


def read_image(path: str, setting: str = "input") -> np.ndarray:
    """Any image file -> (H, W, 3) uint8 RGB, upright as its EXIF orientation says; grayscale, alpha,
    16-bit and palette images are converted. `setting` names the path in errors."""
    import imageio.v3 as iio

    if not os.path.exists(path):
        raise DreamvidError(f"{setting} not found: {path}")
    if os.path.isdir(path):
        clip = " (a folder of frames is a clip: mode=video dreams it)" if setting == "input" else ""
        raise DreamvidError(f"{setting} is a folder, not an image: {path}{clip}")
    import cv2

    # OpenCV keeps 16-bit depth and alpha; imageio reads what it cannot (GIF, some palettes).
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is not None and img.ndim == 3 and img.shape[2] in (3, 4):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    if img is None:
        try:
            img = iio.imread(path, index=0)
        except Exception:  # noqa: BLE001 - any decoder failure means the same thing to the user
            raise DreamvidError(f"cannot read {path} as an image (is it a picture file?)") from None
    return upright(to_rgb8(np.asarray(img)), exif_orientation(path))


def write_image(path: str, rgb: np.ndarray, text: Optional[Dict[str, str]] = None, ext: Optional[str] = None,
                name: Optional[str] = None) -> None:
    """(H, W, 3) uint8 RGB -> a PNG (lossless), JPEG or WebP (quality 95) file, the format from `ext`
    (default: the path's extension). `text` (key -> value) is stored in a PNG's tEXt chunks or a JPEG's
    comment; WebP keeps none. Written in place: callers that must not leave half a file write under a
    temporary name and rename (`name`: the final one, for messages)."""
    from PIL import Image, PngImagePlugin

    ext = (ext or os.path.splitext(path)[1]).lower()
    if ext not in STILL_EXTS:
        raise DreamvidError(f"cannot write a {ext or 'nameless'} picture: use {', '.join(STILL_EXTS)}")
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    text = text or {}
    try:
        if ext == ".png":
            info = PngImagePlugin.PngInfo()
            for key, value in text.items():
                info.add_text(key, value)
            img.save(path, format="PNG", pnginfo=info)
        elif ext == ".webp":
            img.save(path, format="WEBP", quality=95)
        else:
            comment = "\n".join(text.values()).encode()
            # a JPEG comment segment holds 65533 bytes: a longer config lives only in the .yaml beside it
            img.save(path, format="JPEG", quality=95, subsampling=0,
                     **({"comment": comment} if len(comment) <= JPEG_COMMENT_MAX else {}))
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else f"{e.strerror or e} (folder not writable?)"
        raise DreamvidError(f"cannot write {name or path}: {why}") from None


def encode_png(rgb: np.ndarray, fast: bool = False) -> bytes:
    """(H, W, 3) uint8 RGB as the bytes of a PNG file (fast: less compression), made in memory: writing
    them is then plain file I/O, whose failures (a full disk) are an OSError and print nothing."""
    import cv2

    level = 1 if fast else 3
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise DreamvidError(f"cannot encode a {rgb.shape} picture as PNG")
    return buf.tobytes()


def save_image(path: str, rgb: np.ndarray, text: Optional[Dict[str, str]] = None,
               allowed: Optional[files.Identity] = None) -> str:
    """`write_image` under a temporary name of its own, moved into place when whole, so that no
    half-written picture is ever left under the final name; returns where it went (`files.place`:
    `path`, unless something other than `allowed` took that name meanwhile)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        tmp = files.temp_file(folder, os.path.basename(path))
    except OSError as e:
        raise DreamvidError(f"cannot write {path}: {e.strerror}") from None
    try:
        write_image(tmp, rgb, text, ext=os.path.splitext(path)[1], name=path)
        return files.place(tmp, path, allowed)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_without_exif(path: str) -> bool:
    """Whether `path` is a PNG with no eXIf chunk, read from the chunk headers alone (PIL would decode the
    whole picture to look for one after the pixels)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return False
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return True
                length, kind = struct.unpack(">I4s", header)
                if kind == b"eXIf":
                    return False
                if kind == b"IEND":
                    return True
                f.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    except OSError:
        return False


def exif_orientation(path: str) -> int:
    """The EXIF orientation tag (1-8) of an image file, 1 when it has none (phone photos store the
    picture sideways and this tag says how to turn it)."""
    if _png_without_exif(path):
        return 1
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - no EXIF, or a format PIL does not read: as stored
        return 1
    return value if 1 <= value <= 8 else 1


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) turned as EXIF orientation `orientation` asks (2-8 mirror and/or rotate; 1 as is)."""
    transposed = img.transpose(1, 0, 2)
    turned = {2: img[:, ::-1], 3: img[::-1, ::-1], 4: img[::-1], 5: transposed,
              6: np.rot90(img, -1), 7: transposed[::-1, ::-1], 8: np.rot90(img, 1)}.get(orientation, img)
    return np.ascontiguousarray(turned)


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Grayscale / gray+alpha / RGBA (composited on white) / 16-bit / float -> (H, W, 3) uint8."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4):
        raise DreamvidError(f"unsupported image shape {img.shape}: expected gray, RGB or RGBA")
    if img.dtype == np.uint8 and img.shape[-1] in (1, 3):  # nothing to convert (the common case: fast)
        return np.ascontiguousarray(np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img)
    if img.dtype == np.uint8:
        f = img.astype(np.float32) / 255.0
    elif np.issubdtype(img.dtype, np.integer):
        f = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    else:
        f = np.clip(img.astype(np.float32), 0.0, 1.0)
    if f.shape[-1] in (2, 4):  # alpha: composite on white so transparent areas do not turn black
        alpha = f[..., -1:]
        f = f[..., :-1] * alpha + (1.0 - alpha)
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    return np.clip(np.round(f * 255.0), 0, 255).astype(np.uint8)


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None].float() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8 on the host."""
    return (x[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def fit_size(img: np.ndarray, width: Optional[int], height: Optional[int]) -> np.ndarray:
    """Resize to width x height; with only one given, keep the aspect ratio."""
    h, w = img.shape[:2]
    if width is None and height is None:
        return img
    if width is None:
        width = max(1, round(w * height / h))
    if height is None:
        height = max(1, round(h * width / w))
    if (width, height) == (w, h):
        return img
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                      antialias=height < h or width < w)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def clouds(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The built-in starting image: soft procedural clouds in a blue sky, where dreams find animals.

    Fractal noise: a sum of smoothly upsampled random grids, each octave finer and fainter.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.zeros(1, 1, height, width)
    amp, total = 1.0, 0.0
    for cells in (3, 6, 12, 24, 48, 96):
        grid = torch.rand(1, 1, cells, max(2, round(cells * width / height)), generator=g)
        noise += amp * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        total += amp
        amp *= 0.55
    n = (noise / total)[0, 0]
    n = (n - n.min()) / (n.max() - n.min() + 1e-8)
    cover = ((n - 0.35) / 0.45).clamp(0, 1) ** 1.3  # cloud density
    yy = torch.linspace(0, 1, height).view(height, 1)
    sky = torch.stack([0.25 + 0.2 * yy, 0.45 + 0.2 * yy, 0.85 + 0.1 * yy], -1).expand(height, width, 3)
    shade = (0.75 + 0.25 * n).unsqueeze(-1)  # brighter tops, greyer bellies
    cloud = torch.stack([shade[..., 0], shade[..., 0], shade[..., 0] * 1.02], -1)
    img = sky * (1 - cover.unsqueeze(-1)) + cloud * cover.unsqueeze(-1)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
