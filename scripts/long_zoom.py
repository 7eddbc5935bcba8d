"""A long zoom, measured: per frame its mean luminance, mean saturation, clipped share and detail, against
frame 50's; and pictures of it (frames 0, 250, 500, 999 and the curves).

    python scripts/long_zoom.py --frames 1000 --size 128x72 --out docs/media/long_zoom      # the default look
    python scripts/long_zoom.py --frames 300 color.match=0                                  # any settings after

The zoom runs through dreamvid's own zoom loop (pipeline.zoom.zoom_frames with the real dreamer), without
encoding a video. Prints the targets of a long zoom: luminance and saturation within +-10% of frame 50's
from frame 50 on, detail at least 0.67 of frame 50's, clipped pixels within 2 points of frame 20's share.
Writes OUT/measures.json, OUT/curves.png and OUT/frames.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def run(frames: int, size: str, overrides) -> list:
    import torch
    from hydra import compose, initialize_config_module

    from dreamvid import color
    from dreamvid.cli import to_config
    from dreamvid.images import to_tensor, to_uint8
    from dreamvid.pipeline import set_threads
    from dreamvid.pipeline.checks import check, with_frames
    from dreamvid.pipeline.dreamer import dreamer
    from dreamvid.pipeline.zoom import start_image, zoom_frames

    w, h = (int(v) for v in size.split("x"))
    with initialize_config_module(config_module="dreamvid.conf", version_base=None):
        cfg = to_config(compose(config_name="config", overrides=["device=cpu", f"frames={frames}", f"width={w}",
                                                                 f"height={h}", *overrides]))
    cfg = with_frames(cfg)
    check(cfg)
    set_threads(cfg)  # threads=1 for runs side by side: more threads than idle cores wait at every step
    device = torch.device("cpu")
    x = to_tensor(start_image(cfg, device), device)
    keep = {}
    rows = []
    t0 = time.time()
    for t, (frame, _) in enumerate(zoom_frames(cfg, x, dreamer(cfg, device))):
        rgb = to_uint8(frame)
        rows.append(color.measures(rgb))
        if t in (0, 50, frames // 4, frames // 2, frames - 1):
            keep[t] = rgb
        if t % 100 == 0:
            print(f"frame {t}: {rows[-1]} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return rows, keep


def _panel(img, rows, top: int, height: int, lo: float, hi: float, lines, series, title: str) -> None:
    """One plot of `series` {name: (values, bgr)} over the frames, between lo and hi, with labelled lines."""
    import cv2

    left, w = 60, img.shape[1] - 80
    py = lambda v: top + int(round((hi - min(max(v, lo), hi)) / (hi - lo) * (height - 1)))  # noqa: E731
    px = lambda t: left + int(round(t / max(1, len(rows) - 1) * (w - 1)))  # noqa: E731
    cv2.rectangle(img, (left, top), (left + w, top + height), (200, 200, 200), 1)
    for v, label in lines:
        cv2.line(img, (left, py(v)), (left + w, py(v)), (215, 215, 215), 1)
        cv2.putText(img, label, (6, py(v) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (name, (values, bgr)) in enumerate(series.items()):
        pts = np.array([[px(t), py(v)] for t, v in enumerate(values)], np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, bgr, 1, cv2.LINE_AA)
        cv2.putText(img, name, (left + 8 + 120 * i, top + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, bgr, 1, cv2.LINE_AA)
    cv2.putText(img, title, (left + w - 8 - 7 * len(title), top + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1,
                cv2.LINE_AA)
    for t in range(0, len(rows), 250):
        cv2.putText(img, str(t), (px(t) - 6, top + height + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1,
                    cv2.LINE_AA)


def curves(rows: list, path: str) -> None:
    """Above: luminance, saturation and detail as a share of frame 50's, with the targets' bounds; below:
    the clipped share in percent, with frame 20's + 2 points."""
    import cv2

    img = np.full((420, 900, 3), 255, np.uint8)
    base = rows[min(50, len(rows) - 1)]
    ratios = {k: ([r[k] / base[k] for r in rows], bgr) for k, bgr in
              (("luminance", (40, 40, 40)), ("saturation", (200, 60, 160)), ("detail", (40, 140, 40)))}
    _panel(img, rows, 10, 230, 0.5, 1.5, [(1.1, "1.1"), (1.0, "1.0"), (0.9, "0.9"), (0.67, "0.67")], ratios,
           "share of frame 50's")
    limit = 100 * rows[min(20, len(rows) - 1)]["clipped"] + 2
    clipped = {"clipped": ([100 * r["clipped"] for r in rows], (40, 40, 220))}
    _panel(img, rows, 270, 130, 0.0, 30.0, [(0, "0%"), (limit, f"{limit:.0f}%"), (30, "30%")], clipped,
           "clipped pixels, % (line: frame 20's + 2)")
    cv2.imwrite(path, img)


def strip(keep: dict, path: str) -> None:
    import cv2

    shown = [t for t in sorted(keep) if t != 50]
    tiles = [cv2.resize(keep[t], (keep[t].shape[1] * 2, keep[t].shape[0] * 2), interpolation=cv2.INTER_NEAREST)
             for t in shown]
    for t, tile in zip(shown, tiles):
        cv2.putText(tile, f"frame {t}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(path, np.concatenate(tiles, axis=1)[..., ::-1])


def report(rows: list) -> dict:
    base, twenty = rows[min(50, len(rows) - 1)], rows[min(20, len(rows) - 1)]
    after = rows[50:] or rows
    rel = {k: [r[k] / base[k] for r in after] for k in ("luminance", "saturation", "detail")}
    return {"frames": len(rows),
            "luminance": [min(rel["luminance"]), max(rel["luminance"])],
            "saturation": [min(rel["saturation"]), max(rel["saturation"])],
            "detail_min": min(rel["detail"]),
            "clipped_frame20": twenty["clipped"], "clipped_max": max(r["clipped"] for r in after),
            "targets_met": all(0.9 <= v <= 1.1 for v in rel["luminance"] + rel["saturation"])
            and min(rel["detail"]) >= 0.67 and max(r["clipped"] for r in after) <= twenty["clipped"] + 0.02}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--size", default="128x72")
    p.add_argument("--out", default=None, help="a folder for measures.json, curves.png and frames.png")
    p.add_argument("overrides", nargs="*", help="dreamvid settings (key=value)")
    a = p.parse_args(argv)
    rows, keep = run(a.frames, a.size, a.overrides)
    summary = report(rows)
    print(json.dumps(summary))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "measures.json"), "w") as f:
            json.dump({"settings": a.overrides, "size": a.size, "summary": summary, "frames": rows}, f)
        curves(rows, os.path.join(a.out, "curves.png"))
        strip(keep, os.path.join(a.out, "frames.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
