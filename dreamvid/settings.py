"""What is read off the settings' declarations (`config.setting`): the checks at the door, the warnings
for settings a mode ignores, the help text and the settings tables of the docs.

Nothing here restates a setting: a new one declared in config.py is checked, warned about, listed in
`dreamvid --help` and required in the docs' tables (tests/test_settings.py) without another line.
"""
from __future__ import annotations

import textwrap
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence

from . import schedule
from .config import MODES, Config, Declared, declared, section_unused
from .errors import DreamvidError

_DECLARED: Dict[str, Declared] = {d.name: d for d in declared()}


def declaration(name: str) -> Optional[Declared]:
    return _DECLARED.get(name)


def value_of(cfg: Any, name: str) -> Any:
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check(cfg: Config, frames: int, fps: float, sections: Optional[Sequence[str]] = None) -> None:
    """Every declared rule, at every frame 0..frames-1 for a scheduled setting (each schedule evaluated once
    per frame); sections: only those ("" for the top-level settings), default all."""
    for d in _DECLARED.values():
        if sections is not None and d.section not in sections:
            continue
        value = value_of(cfg, d.name)
        if value is None or d.internal:
            continue
        if d.scheduled:
            sched = schedule.parse(value, d.name)
            seen = [sched(0, fps)] if sched.constant else schedule.values(value, max(int(frames), 1), fps, d.name)
            if d.rule is not None:
                bad = next((t for t, v in enumerate(seen) if not d.rule.test(v)), None)
                if bad is not None:
                    at = "" if sched.constant else f" at frame {bad}"
                    raise DreamvidError(f"{d.name}={_shown(seen[bad])}{at} {d.rule.says}")
        elif d.rule is not None and not isinstance(value, (list, tuple, dict)):
            try:
                ok = d.rule.test(value)
            except TypeError:
                ok = False
            if not ok:
                raise DreamvidError(f"{d.name}={_shown(value)} {d.rule.says}")


def frame_values(section: Any, name: str, t: int, fps: float) -> Dict[str, float]:
    """The scheduled settings of a config section (`name`: "dream", "motion", "coherence") at frame t."""
    from .config import scheduled

    return {n: schedule.at(getattr(section, n), t, fps, f"{name}.{n}") for n in scheduled(name)}


def ignored(cfg: Config, typed: Iterable[str]) -> List[str]:
    """What to say of each setting the command line named (`typed`) that this mode does not use: one line
    per setting, or per section when several of one section are ignored (a warning each, not an error: a
    sweep over modes may share them)."""
    lines: List[str] = []
    by_section: Dict[str, List[str]] = {}
    for key in typed:
        key = key.lstrip("+~")
        if key in ("flow",) and cfg.mode != "video":  # the group: flow=farneback picks flow.method and .preset
            by_section.setdefault("flow", []).append(key)
            continue
        d = _DECLARED.get(key)
        if d is None or cfg.mode in d.modes or d.internal:
            continue
        if d.section and section_unused(d.section):
            by_section.setdefault(d.section, []).append(key)
        else:
            why = d.unused or f"{d.help} (mode={', mode='.join(d.modes)})"
            lines.append(f"{key} is ignored in mode={cfg.mode}: {why}")
    for section, names in sorted(by_section.items()):
        names = list(dict.fromkeys(names))
        verb = "is" if len(names) == 1 else "are"
        lines.append(f"{', '.join(names)} {verb} ignored in mode={cfg.mode}: {section_unused(section)}")
    return lines


def warn(lines: Iterable[str]) -> None:
    for line in lines:
        warnings.warn(line, stacklevel=3)


# -- help and tables ------------------------------------------------------------------------------

def _default(d: Declared) -> str:
    v = d.default
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]" if v else "[]"
    return _shown(v)


def _modes(d: Declared) -> str:
    return "all" if set(d.modes) == set(MODES) else ", ".join(d.modes)


def help_lines(width: int = 100) -> List[str]:
    """Every setting, grouped by section, with its default, the modes that use it and its help."""
    lines: List[str] = []
    section = None
    for d in _DECLARED.values():
        if d.internal:
            continue
        if d.section != section:
            section = d.section
            lines.append("")
            lines.append(f"{section}:" if section else "settings:")
        sched = ", a schedule" if d.scheduled else ""
        head = f"  {d.name}={_default(d)}"
        text = f"{d.help} [{_modes(d)}{sched}]"
        wrapped = textwrap.wrap(text, width - 36) or [""]
        first = head.ljust(35) + wrapped[0] if len(head) < 35 else head + "\n" + " " * 35 + wrapped[0]
        lines.append(first)
        lines += [" " * 35 + more for more in wrapped[1:]]
    return lines


def table(section: str) -> str:
    """The Markdown table of a section's settings ("" for the top-level ones), as the docs hold it."""
    rows = ["| setting | default | modes | meaning |", "|---|---|---|---|"]
    for d in _DECLARED.values():
        if d.section != section or d.internal:
            continue
        sched = " (takes a schedule)" if d.scheduled else ""
        rows.append(f"| `{d.name}` | `{_default(d)}` | {_modes(d)} | {d.help}{sched} |")
    return "\n".join(rows)


# Where each section's table lives (between `<!-- settings:NAME -->` markers): tests hold the docs to it
TABLES = {"": "README.md", "model": "README.md", "dream": "README.md", "motion": "README.md", "speed": "README.md",
          "color": "README.md",
          "flow": "docs/video.md", "coherence": "docs/video.md", "neuron": "docs/neuron.md"}


def marked(text: str, section: str) -> Optional[str]:
    """The table between a document's `<!-- settings:NAME -->` and `<!-- /settings -->` markers (None: none)."""
    start = f"<!-- settings:{section or 'top'} -->"
    if start not in text:
        return None
    return text.split(start, 1)[1].split("<!-- /settings -->", 1)[0].strip()


def rewrite(text: str, section: str) -> str:
    """`text` with the table between the section's markers made anew from the declarations."""
    start = f"<!-- settings:{section or 'top'} -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split("<!-- /settings -->", 1)
    return f"{head}{start}\n{table(section)}\n<!-- /settings -->{tail}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """python -m dreamvid.settings [--write]: print every section's table; --write puts them into the docs."""
    import argparse
    import os

    p = argparse.ArgumentParser(prog="python -m dreamvid.settings", description=main.__doc__)
    p.add_argument("--write", action="store_true", help="rewrite the tables in README.md and docs/")
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    a = p.parse_args(argv)
    for section, doc in TABLES.items():
        if not a.write:
            print(f"{section or 'top'} ({doc}):\n{table(section)}\n")
            continue
        path = os.path.join(a.root, doc)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if marked(text, section) is None:
            p.error(f"{doc} has no <!-- settings:{section or 'top'} --> ... <!-- /settings --> markers")
        new = rewrite(text, section)  # made whole before the file is opened for writing
        with open(path + ".partial", "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(path + ".partial", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
