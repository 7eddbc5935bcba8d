"""Measure how coherent a dreamed clip is against its source clip (streaming, memory flat).

    python scripts/coherence.py dream.mp4 --source clip.mp4
    python scripts/coherence.py dream.mp4 --source clip.mp4 --json [--series]
    python scripts/coherence.py dream.mp4 --source objects.mp4 --boxes objects.mp4.boxes.json

Prints the warp error of the output and of the source itself (Lai et al. 2018), the residual flicker
(0: the dream moves with the scene, about 1: a new dream every frame) and the dream strength over
time; `dreamvid/metrics.py` defines each. With --boxes (from `scripts/make_clip.py --objects`), also the
flicker and strength inside each moving square, whose motion is known.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from dreamvid.metrics import coherence, object_flicker
from dreamvid.errors import DreamvidError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output", help="the dreamed clip")
    p.add_argument("--source", required=True, help="the clip it was dreamed from")
    p.add_argument("--flow", default="dis", choices=("dis", "farneback"))
    p.add_argument("--preset", default="medium", choices=("ultrafast", "fast", "medium"))
    p.add_argument("--interpolation", default="bilinear", choices=("bilinear", "bicubic"),
                   help="resampling of the warp (bilinear as Lai et al. 2018)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--cut-threshold", type=float, default=0.5)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--series", action="store_true", help="with --json: include the per-frame values")
    p.add_argument("--boxes", default=None, help="a boxes.json of moving squares: their flicker and strength")
    a = p.parse_args(argv)
    try:
        r = coherence(a.output, a.source, method=a.flow, preset=a.preset, max_frames=a.max_frames,
                      cut_threshold=a.cut_threshold, interpolation=a.interpolation)
        if a.boxes:
            with open(a.boxes) as f:
                r["objects"] = object_flicker(a.output, a.source, json.load(f)["objects"], max_frames=a.max_frames)
    except (DreamvidError, OSError, KeyError, ValueError) as e:  # the measure's, or a boxes file's
        print(f"coherence: error: {e if isinstance(e, DreamvidError) else f'{a.boxes}: {e!r}'}", file=sys.stderr)
        return 2
    if not a.series:
        r.pop("series")
    if a.json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()},
                         indent=1))
        return 0
    print(f"{a.output} against {a.source} ({r['frames']} frames, {r['pairs']} pairs, "
          f"flow {r['flow']}, {r['interpolation']} warp"
          f"{', cuts at ' + ', '.join(map(str, r['cuts'])) if r['cuts'] else ''})")
    print(f"  warp error        {r['warp_error']:.3e}   source {r['source_warp_error']:.3e}   "
          f"ratio {r['warp_error_ratio']:.2f}")
    print(f"  residual flicker  {r['flicker']:.4f}   (0 moves with the scene, 1 unrelated frames)")
    print(f"  dream strength    {r['strength']:.2f} levels   first tenth {r['strength_first_tenth']:.2f}   "
          f"last tenth {r['strength_last_tenth']:.2f}   ratio {r['strength_ratio']:.2f}")
    print(f"  brightness offset first tenth {r['brightness_first_tenth']:+.2f}   "
          f"last tenth {r['brightness_last_tenth']:+.2f} levels")
    for obj in r.get("objects", []):
        print(f"  {obj['size']:>3} px square   flicker {obj['flicker']:.4f}   strength {obj['strength']:.2f} levels   "
              f"source change {obj['source_change']:.2f} levels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
