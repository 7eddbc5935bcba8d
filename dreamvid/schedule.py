"""Keyframe schedules: settings that change over the frames of a render.

Every numeric motion and dream setting takes a plain number or a schedule string:

    "0:(1.0), 48:(1.05), 96:(1.0)"          keyframes, linear in between (the default)
    "smooth: 0:(1.0), 48:(1.5)"             smoothstep easing between keyframes
    "step: 0:(10), 48:(4)"                  hold each value until the next keyframe
    "1 + 0.05*sin(2*pi*s)"                  a bare expression, no keyframes
    "0:(1), 48:(1 + 0.1*abs(sin(pi*s)))"    keyframe values may be expressions too

Values are arithmetic in `t` (the frame index), `s` (seconds, t / fps) and `fps`, with a fixed list of
functions and constants (`FUNCTIONS`, `CONSTANTS`); `loudness(t)` and `onset(t)` follow the render's sound
(0..1, `audio=`: dreamvid.audio). Before the first keyframe its value holds, after
the last keyframe the last value holds; both neighbours are evaluated at the current frame and then
interpolated.

Expressions are read with `ast.parse` and checked against an allow-list; they are then turned into
small evaluation functions by walking the tree here. User text is never passed to `eval`, `exec` or
`compile`, nothing is imported or called except the listed maths functions, and the results are
always finite floats. Anything else is a `DreamvidError` that names the setting and the offending part.

`parse_steps` reads the same keyframe syntax for the dream layers, without interpolation:
"0:(blocks.10), 48:(blocks.7+blocks.4)" gives ["blocks.10"] up to frame 47, then ["blocks.7", "blocks.4"].
"""
from __future__ import annotations

import ast
import bisect
import functools
import math
import numbers
import os
import re
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import DreamvidError

MAX_LENGTH = 10_000  # characters in one schedule string
MAX_BRACKETS = 50  # nesting of ( [ {
MAX_DEPTH = 100  # nesting of the expression tree (operators, calls)
MAX_EXPONENT = 100.0  # |b| in a ** b
MAX_FRAME_DIGITS = 9  # keyframe frames up to 999,999,999

MODES = ("linear", "smooth", "step")
VARIABLES = ("t", "s", "fps")


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _smoothstep(e0: float, e1: float, x: float) -> float:
    if e0 == e1:
        return 0.0 if x < e0 else 1.0
    w = _clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return w * w * (3.0 - 2.0 * w)


def _sign(x: float) -> float:
    return (x > 0) - (x < 0)


def _log(x: float, base: Optional[float] = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: Dict[str, Tuple[Callable[..., float], int, Optional[int]]] = {
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "atan2": (math.atan2, 2, 2),
    "sinh": (math.sinh, 1, 1),
    "cosh": (math.cosh, 1, 1),
    "tanh": (math.tanh, 1, 1),
    "abs": (abs, 1, 1),
    "sign": (_sign, 1, 1),
    "min": (min, 2, None),
    "max": (max, 2, None),
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (_log, 1, 2),
    "log2": (math.log2, 1, 1),
    "log10": (math.log10, 1, 1),
    "hypot": (math.hypot, 2, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "round": (round, 1, 1),
    "fract": (lambda x: x - math.floor(x), 1, 1),
    "clamp": (_clamp, 3, 3),
    "lerp": (lambda a, b, w: a + (b - a) * w, 3, 3),
    "smoothstep": (_smoothstep, 3, 3),
}
CONSTANTS: Dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

# Functions of the render's sound (`audio=`, dreamvid.audio): their argument is a frame index, their
# value 0..1, read from the signals the render in progress set with `use_signals`.
SIGNALS = ("loudness", "onset")
_signals: Dict[str, Any] = {"current": None}


class NoSignals(DreamvidError):
    """loudness() or onset() in a schedule of a render without a sound."""


def use_signals(signals: Any) -> None:
    """The sound's per-frame signals (`audio.FrameSignals`, or None) that loudness() and onset() read."""
    _signals["current"] = signals


def _signal(name: str) -> Callable[[float], float]:
    def value(x: float) -> float:
        current = _signals["current"]
        if current is None:
            raise NoSignals(f"{name}(t) follows a sound: give audio=SONG (in mode=video a clip with sound "
                            f"serves by itself)")
        return current.value(name, float(x))

    return value


for _name in SIGNALS:
    FUNCTIONS[_name] = (_signal(_name), 1, 1)
ALLOWED = ", ".join(VARIABLES + tuple(FUNCTIONS) + tuple(CONSTANTS))

_BINOPS: Dict[type, Tuple[str, Callable[[float, float], float]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
    ast.FloorDiv: ("//", lambda a, b: float(a // b)),
    ast.Mod: ("%", lambda a, b: a % b),
}
_COMPARE: Dict[type, Callable[[float, float], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
_FORBIDDEN = {
    ast.Attribute: "attribute access",
    ast.Subscript: "a subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.List: "a list",
    ast.Tuple: "a tuple (several values separated by commas)",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.BoolOp: "'and' / 'or'",
    ast.NamedExpr: "assignment (':=')",
    ast.JoinedStr: "a string",
    ast.FormattedValue: "a string",
    ast.Starred: "'*' unpacking",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}

_INT_RE = re.compile(r"\d+")
_WORD_RE = re.compile(r"[A-Za-z_]\w*")
_PREFIX_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*:(?=\s*\d+\s*:)")
_LAYER_RE = re.compile(r"[A-Za-z0-9_][\w.]*")
_OPEN, _CLOSE = "([{", ")]}"

Env = Tuple[float, float, float]  # (t, s, fps)
Fn = Callable[[Env], float]


class _EvalError(Exception):
    """A value that cannot be computed at one frame (division by zero, overflow, domain error)."""


def _short(text: str, limit: int = 80) -> str:
    text = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(name: str, text: str, problem: str) -> DreamvidError:
    return DreamvidError(f'{name}: schedule "{_short(text)}": {problem}')


def _check_text(text: str, name: str) -> None:
    """Length, bracket balance and bracket nesting, before anything else reads the text."""
    if len(text) > MAX_LENGTH:
        raise _fail(name, text, f"too long ({len(text)} characters; at most {MAX_LENGTH})")
    if not text.strip():
        raise _fail(name, text, "empty schedule; give a number, an expression or keyframes like 0:(1.0), 48:(1.5)")
    stack: List[Tuple[str, int]] = []
    for i, ch in enumerate(text):
        if ch in _OPEN:
            stack.append((ch, i))
            if len(stack) > MAX_BRACKETS:
                raise _fail(name, text, f"brackets nested deeper than {MAX_BRACKETS} levels")
        elif ch in _CLOSE:
            if not stack:
                raise _fail(name, text, f"unbalanced brackets: '{ch}' at character {i + 1} closes nothing")
            opened, j = stack.pop()
            if _OPEN.index(opened) != _CLOSE.index(ch):
                raise _fail(name, text, f"unbalanced brackets: '{opened}' at character {j + 1} "
                                        f"is closed by '{ch}' at character {i + 1}")
    if stack:
        opened, j = stack[-1]
        raise _fail(name, text, f"unbalanced brackets: '{opened}' at character {j + 1} is never closed")


def _split_top(text: str, sep: str) -> List[str]:
    """Split on `sep` outside brackets (the text is already known to be balanced)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _split_mode(text: str, name: str, default: str = "linear") -> Tuple[str, str]:
    """Strip a leading 'linear:', 'smooth:' or 'step:'; returns (mode, rest)."""
    m = _PREFIX_RE.match(text)
    if m and m.group(1).lower() in MODES:
        return m.group(1).lower(), text[m.end():]
    if m:
        raise _fail(name, text, f"unknown interpolation {m.group(1)!r}; choose one of: {', '.join(MODES)}")
    return default, text


def _keyframes(body: str, name: str, text: str) -> Optional[List[Tuple[int, str]]]:
    """[(frame, value text)] of body sorted by frame, or None when it has no keyframes (a bare value).

    `text` is the whole schedule, for messages.
    """
    items = _split_top(body, ",")
    if len(items) > 1 and not items[-1].strip():
        items = items[:-1]  # one trailing comma is fine
    if not any(len(_split_top(item, ":")) > 1 for item in items):
        return None
    keys: Dict[int, str] = {}
    for item in items:
        parts = _split_top(item, ":")
        if not item.strip():
            raise _fail(name, text, "empty keyframe (two commas in a row?)")
        if len(parts) != 2:
            raise _fail(name, text, f"keyframe '{_short(item.strip(), 40)}' needs the form FRAME:(VALUE), e.g. 48:(1.05)")
        frame_text, value = parts[0].strip(), parts[1].strip()
        if not _INT_RE.fullmatch(frame_text):
            _as_expression(body, name, text)
            if frame_text.startswith("-") and _INT_RE.fullmatch(frame_text[1:].strip()):
                problem = f"keyframe frame '{frame_text}' is negative; frames count from 0"
            elif _WORD_RE.fullmatch(frame_text) and not keys:
                problem = (f"keyframe frame '{frame_text}' is not a whole number "
                           f"(interpolation prefixes are: {', '.join(MODES)})")
            else:
                problem = f"keyframe frame '{_short(frame_text, 40)}' is not a whole number >= 0"
            raise _fail(name, text, problem)
        if len(frame_text) > MAX_FRAME_DIGITS:
            raise _fail(name, text, f"keyframe frame '{_short(frame_text, 20)}' is too large")
        frame = int(frame_text)
        if frame in keys:
            raise _fail(name, text, f"keyframe frame {frame} appears twice")
        if not (value.startswith("(") and _closing(value) == len(value) - 1):
            raise _fail(name, text, f"keyframe '{_short(item.strip(), 40)}': the value must be in one pair "
                                    f"of parentheses, e.g. {frame}:(1.05)")
        inner = value[1:-1]
        if not inner.strip():
            raise _fail(name, text, f"keyframe {frame} has an empty value")
        keys[frame] = inner
    return sorted(keys.items())


def _as_expression(body: str, name: str, text: str) -> None:
    """When text with a colon is not keyframes but reads as Python (`lambda: 1`), name what is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(body.strip(), mode="eval")
    except Exception:  # noqa: BLE001 - not Python either: the keyframe message is the better one
        return
    _Compiler(body, name, text).compile()


def _closing(text: str) -> int:
    """Index of the bracket that closes text[0] (text is balanced)."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return i
    return -1


# ---------------------------------------------------------------------------------------------
# Expressions


class _Compiler:
    """Checks one expression against the allow-list and builds its evaluation function."""

    def __init__(self, src: str, name: str, text: str):
        self.src, self.name, self.text = src, name, text
        self.uses: set = set()

    def fail(self, problem: str) -> DreamvidError:
        return _fail(self.name, self.text, problem)

    def seg(self, node: ast.AST) -> str:
        try:
            part = ast.get_source_segment(self.src, node)
        except Exception:  # noqa: BLE001 - only used for messages
            part = None
        return _short(part or type(node).__name__, 60)

    def compile(self) -> Fn:
        try:
            with warnings.catch_warnings():  # e.g. "invalid decimal literal": the error below says it
                warnings.simplefilter("ignore")
                tree = ast.parse(self.src.strip(), mode="eval")
        except SyntaxError as e:
            raise self.fail(f"cannot read '{_short(self.src.strip(), 60)}': {e.msg}") from None
        except (ValueError, TypeError) as e:  # null bytes, over-long integer literals
            raise self.fail(f"cannot read '{_short(self.src.strip(), 60)}': {e}") from None
        except (RecursionError, MemoryError):
            raise self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)") from None
        self.src = self.src.strip()
        self.check(tree)
        return self.build(tree.body)

    def check(self, tree: ast.AST) -> None:
        """Reject any node outside the allow-list (pre-order, so the outermost problem is named)."""
        stack = [(tree, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
            self.check_node(node)
            children = node.args if isinstance(node, ast.Call) else list(ast.iter_child_nodes(node))
            stack.extend((c, depth + 1) for c in reversed(children))

    def check_node(self, node: ast.AST) -> None:
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Load,
                             ast.operator, ast.unaryop, ast.cmpop)):
            if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS and not isinstance(node.op, ast.Pow):
                raise self.fail(f"operator in '{self.seg(node)}' is not allowed; "
                                f"allowed: + - * / // % ** and comparisons")
            if isinstance(node, ast.Compare) and any(type(o) not in _COMPARE for o in node.ops):
                raise self.fail(f"operator in '{self.seg(node)}' is not allowed; comparisons are "
                                f"< <= > >= == !=")
            if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise self.fail(f"operator in '{self.seg(node)}' is not allowed; allowed: + - * / // % ** "
                                f"and comparisons")
            return
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, (str, bytes)):
                raise self.fail(f"a string is not allowed: {self.seg(node)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(f"'{self.seg(node)}' is not allowed; only numbers")
            try:
                f = float(v)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                raise self.fail(f"number '{self.seg(node)}' is too large")
            return
        if isinstance(node, ast.Name):
            if node.id in VARIABLES or node.id in CONSTANTS:
                return
            if node.id in FUNCTIONS:
                raise self.fail(f"'{node.id}' is a function; call it, e.g. {node.id}(t)")
            raise self.fail(f"name '{_short(node.id, 40)}' is not allowed; allowed: {ALLOWED}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                what = _FORBIDDEN.get(type(node.func), "calling this")
                raise self.fail(f"{what} is not allowed: '{self.seg(node.func)}'")
            fname = node.func.id
            if fname in SIGNALS:
                self.uses.add("audio")  # never a constant: the value is the sound's
            if fname not in FUNCTIONS:
                if fname in VARIABLES or fname in CONSTANTS:
                    raise self.fail(f"'{fname}' is not a function: '{self.seg(node)}'")
                raise self.fail(f"name '{_short(fname, 40)}' is not allowed; allowed: {ALLOWED}")
            if node.keywords:
                raise self.fail(f"keyword arguments are not allowed: '{self.seg(node)}'")
            _, lo, hi = FUNCTIONS[fname]
            n = len(node.args)
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise self.fail(f"'*' unpacking is not allowed: '{self.seg(node)}'")
            if n < lo or (hi is not None and n > hi):
                want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
                raise self.fail(f"{fname}() takes {want} argument{'s' if want != '1' else ''}, "
                                f"got {n}: '{self.seg(node)}'")
            return
        what = _FORBIDDEN.get(type(node), f"'{type(node).__name__}'")
        raise self.fail(f"{what} is not allowed: '{self.seg(node)}'")

    def build(self, node: ast.AST) -> Fn:
        """Evaluation function for a checked node (depth is bounded by the check)."""
        if isinstance(node, ast.Constant):
            value = float(node.value)
            return lambda env: value
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                value = CONSTANTS[node.id]
                return lambda env: value
            self.uses.add(node.id)
            index = VARIABLES.index(node.id)
            return lambda env: env[index]
        seg = self.seg(node)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda env: -operand(env)
            return operand
        if isinstance(node, ast.BinOp):
            left, right = self.build(node.left), self.build(node.right)
            if isinstance(node.op, ast.Pow):
                return lambda env: _power(left(env), right(env), seg)
            _, op = _BINOPS[type(node.op)]
            return lambda env: _apply(op, (left(env), right(env)), seg)
        if isinstance(node, ast.Compare):
            first = self.build(node.left)
            rest = [(_COMPARE[type(o)], self.build(c)) for o, c in zip(node.ops, node.comparators)]

            def compare(env: Env) -> float:
                a = first(env)
                for op, fn in rest:
                    b = fn(env)
                    if not op(a, b):
                        return 0.0
                    a = b
                return 1.0
            return compare
        if isinstance(node, ast.IfExp):
            test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)
            return lambda env: body(env) if test(env) != 0.0 else orelse(env)
        if isinstance(node, ast.Call):
            fn = FUNCTIONS[node.func.id][0]
            args = [self.build(a) for a in node.args]
            return lambda env: _apply(fn, [a(env) for a in args], seg)
        raise self.fail(f"'{seg}' is not allowed")  # unreachable after check()


def _apply(fn: Callable[..., Any], args: Sequence[float], seg: str) -> float:
    try:
        r = float(fn(*args))
    except ZeroDivisionError:
        raise _EvalError(f"'{seg}': division by zero") from None
    except OverflowError:
        raise _EvalError(f"'{seg}': the result is too large") from None
    except ValueError as e:
        raise _EvalError(f"'{seg}': {e}") from None
    if not math.isfinite(r):
        raise _EvalError(f"'{seg}': the result is not a finite number ({r})")
    return r


def _power(a: float, b: float, seg: str) -> float:
    if abs(b) > MAX_EXPONENT:
        raise _EvalError(f"'{seg}': exponent {b:g} is too large (at most {MAX_EXPONENT:g} either way)")
    if a == 0.0 and b < 0:
        raise _EvalError(f"'{seg}': 0 to a negative power (division by zero)")
    if a < 0 and b != math.floor(b):
        raise _EvalError(f"'{seg}': a negative number to a fractional power ({a:g} ** {b:g})")
    return _apply(math.pow, (a, b), seg)


# ---------------------------------------------------------------------------------------------
# Numeric schedules


class Schedule:
    """A numeric setting over the frames: `schedule(t, fps) -> float`."""

    __slots__ = ("name", "text", "mode", "keyframes", "bare", "uses", "_values", "_const")

    def __init__(self, name: str, text: str, mode: str, keys: Sequence[Tuple[int, Fn]], uses: frozenset,
                 bare: bool = False):
        self.name, self.text, self.mode = name, text, mode
        self.bare = bare  # a number or an expression without keyframes
        self.keyframes: Tuple[int, ...] = tuple(k for k, _ in keys)
        self._values: Tuple[Fn, ...] = tuple(f for _, f in keys)
        self.uses = uses  # the variables used: a subset of {"t", "s", "fps"}, and "audio" for loudness()/onset()
        self._const: Optional[float] = None
        if not uses:
            values = [self._eval(0, f, (0.0, 0.0, 1.0)) for f in self._values]
            if all(v == values[0] for v in values):
                self._const = values[0]

    @property
    def constant(self) -> bool:
        """True when the value does not change from frame to frame (it may still depend on fps)."""
        return self._const is not None or (len(self._values) == 1 and not ({"t", "s", "audio"} & self.uses))

    def _eval(self, t: float, fn: Fn, env: Env) -> float:
        try:
            return fn(env)
        except _EvalError as e:
            raise _fail(self.name, self.text, f"at frame {t:g}: {e}") from None
        except NoSignals as e:
            raise DreamvidError(f"{self.name}: {e}") from None
        except RecursionError:
            raise _fail(self.name, self.text, "expression nested too deeply") from None

    def __call__(self, t: float, fps: float) -> float:
        if self._const is not None:
            return self._const
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise DreamvidError(f"{self.name}: fps must be a positive number, got {fps!r}")
        env = (float(t), t / fps, float(fps))
        keys, values = self.keyframes, self._values
        i = bisect.bisect_right(keys, t) - 1
        if i < 0:
            return self._eval(t, values[0], env)
        if i == len(keys) - 1 or t == keys[i] or self.mode == "step":
            return self._eval(t, values[i], env)
        a, b = self._eval(t, values[i], env), self._eval(t, values[i + 1], env)
        w = (t - keys[i]) / (keys[i + 1] - keys[i])
        if self.mode == "smooth":
            w = w * w * (3.0 - 2.0 * w)
        r = a + (b - a) * w
        if not math.isfinite(r):
            raise _fail(self.name, self.text, f"at frame {t:g}: the interpolated value is not finite")
        return r

    def __repr__(self) -> str:
        return f"Schedule({self.name}: {_short(self.text)!r}, {self.mode})"


@functools.lru_cache(maxsize=512)
def _parse_text(text: str, name: str) -> Schedule:
    _check_text(text, name)
    mode, body = _split_mode(text, name)
    keys = _keyframes(body, name, text)
    bare = keys is None
    if keys is None:
        keys = [(0, body)]
    built, uses = [], set()
    for frame, src in keys:
        c = _Compiler(src, name, text)
        built.append((frame, c.compile()))
        uses |= c.uses
    return Schedule(name, text, mode, built, frozenset(uses), bare)


def parse(value: Any, name: str = "setting") -> Schedule:
    """A schedule from a number or a schedule string; raises DreamvidError naming `name`."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        return _parse_text(value, name)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            v = float(value)
        except (OverflowError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise DreamvidError(f"{name}: {value!r} is not a finite number")
        return Schedule(name, repr(value), "linear", [(0, lambda env: v)], frozenset(), bare=True)
    raise DreamvidError(f"{name}: expected a number or a schedule string, got {type(value).__name__} {value!r}")


def at(value: Any, t: int, fps: float, name: str = "setting") -> float:
    """The value of a setting (number or schedule string) at frame t."""
    return parse(value, name)(t, fps)


def validate(value: Any, name: str, frames: int, fps: float) -> None:
    """Evaluate a setting at every frame 0..frames-1 so that a bad schedule fails before a render."""
    sched = parse(value, name)
    if sched.constant:
        sched(0, fps)
        return
    for t in range(max(int(frames), 1)):
        sched(t, fps)


def values(value: Any, frames: int, fps: float, name: str = "setting") -> List[float]:
    """The setting at frames 0..frames-1."""
    sched = parse(value, name)
    return [sched(t, fps) for t in range(int(frames))]


# ---------------------------------------------------------------------------------------------
# Step schedules (dream layers)


class StepSchedule:
    """A list of names that switches at keyframes: `steps(t) -> list[str]`."""

    __slots__ = ("name", "text", "keyframes", "_values")

    def __init__(self, name: str, text: str, keys: Sequence[Tuple[int, Tuple[str, ...]]]):
        self.name, self.text = name, text
        self.keyframes: Tuple[int, ...] = tuple(k for k, _ in keys)
        self._values: Tuple[Tuple[str, ...], ...] = tuple(v for _, v in keys)

    @property
    def constant(self) -> bool:
        return len(set(self._values)) == 1

    def __call__(self, t: float) -> List[str]:
        i = max(bisect.bisect_right(self.keyframes, t) - 1, 0)
        return list(self._values[i])

    def __repr__(self) -> str:
        return f"StepSchedule({self.name}: {_short(self.text)!r})"


def _names(text: str, part: str, name: str) -> Tuple[str, ...]:
    names = tuple(n.strip() for n in part.split("+"))
    for n in names:
        if not n:
            raise _fail(name, text, f"empty layer name in '{_short(part.strip(), 40)}' (names are joined with +)")
        if not _LAYER_RE.fullmatch(n):
            raise _fail(name, text, f"'{_short(n, 40)}' is not a layer name (letters, digits, _ and .)")
    return names


@functools.lru_cache(maxsize=256)
def _parse_steps_text(text: str, name: str) -> StepSchedule:
    _check_text(text, name)
    mode, body = _split_mode(text, name, default="step")
    if mode != "step":
        raise _fail(name, text, f"'{mode}:' does not apply here; layer schedules switch at keyframes (step)")
    keys = _keyframes(body, name, text)
    if keys is None:
        return StepSchedule(name, text, [(0, _names(text, body, name))])
    return StepSchedule(name, text, [(k, _names(text, v, name)) for k, v in keys])


_PICTURE_KEYS_RE = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*:\s*)?\d+\s*:\s*\(")


class PictureSchedule:
    """Pictures at keyframes, blended between them: `pictures(t) -> (picture a, picture b, weight of b)`.

    Modes as for numbers: linear (the default) and smooth blend from one keyframe's picture to the next's,
    step switches at each keyframe. A plain path is one picture for every frame.
    """

    __slots__ = ("name", "text", "mode", "keyframes", "pictures")

    def __init__(self, name: str, text: str, mode: str, keys: Sequence[Tuple[int, str]]):
        self.name, self.text, self.mode = name, text, mode
        self.keyframes: Tuple[int, ...] = tuple(k for k, _ in keys)
        self.pictures: Tuple[str, ...] = tuple(v for _, v in keys)

    def __call__(self, t: float) -> Tuple[str, str, float]:
        keys, pics = self.keyframes, self.pictures
        i = bisect.bisect_right(keys, t) - 1
        if i < 0:
            return pics[0], pics[0], 0.0
        if i == len(keys) - 1 or self.mode == "step" or t == keys[i]:
            return pics[i], pics[i], 0.0
        w = (t - keys[i]) / (keys[i + 1] - keys[i])
        if self.mode == "smooth":
            w = w * w * (3.0 - 2.0 * w)
        return pics[i], pics[i + 1], float(w)

    def with_paths(self, change: Callable[[str], str]) -> str:
        """The schedule's text with each picture's path changed (made absolute, say)."""
        if len(self.pictures) == 1 and not _PICTURE_KEYS_RE.match(self.text):
            return change(self.pictures[0])
        body = ", ".join(f"{k}:({change(p)})" for k, p in zip(self.keyframes, self.pictures))
        return body if self.mode == "linear" else f"{self.mode}: {body}"


def parse_pictures(value: str, name: str = "dream.guide") -> PictureSchedule:
    """A picture, or pictures at keyframes: "a.jpg", "0:(a.jpg), 48:(b.jpg)", "step: 0:(a.jpg), 96:(b.png)"."""
    text = str(value)
    _check_text(text, name)
    if not _PICTURE_KEYS_RE.match(text):
        return PictureSchedule(name, text, "step", [(0, text.strip())])
    mode, body = _split_mode(text, name)
    keys = _keyframes(body, name, text) or []
    return PictureSchedule(name, text, mode, [(k, v.strip()) for k, v in keys])


def parse_steps(value: Any, name: str = "dream.layers") -> StepSchedule:
    """A step schedule of names: "0:(blocks.10), 48:(blocks.7+blocks.4)", "blocks.10", or a list of names.

    A list is either plain names (constant) or a single schedule string.
    """
    if isinstance(value, StepSchedule):
        return value
    if isinstance(value, str):
        return _parse_steps_text(value, name)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        if len(value) == 1:
            return _parse_steps_text(value[0], name)
        joined = "+".join(value)
        if any(c in joined for c in ":(),"):
            raise DreamvidError(f"{name}: a layer schedule must be the only item of the list, got {list(value)!r}")
        return _parse_steps_text(joined, name)
    raise DreamvidError(f"{name}: expected layer names or a layer schedule string, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Preview


def preview(value: Any, frames: int, fps: float, path: str, name: str = "setting",
            size: Tuple[int, int] = (640, 240)) -> str:
    """Plot the setting over frames 0..frames-1 into a PNG (width x height = size); returns the path."""
    import cv2
    import numpy as np

    sched = parse(value, name)
    frames = int(frames)
    if frames < 1:
        raise DreamvidError(f"{name}: preview needs at least 1 frame, got {frames}")
    ys = [sched(t, fps) for t in range(frames)]
    w, h = size
    left, right, top, bottom = 78, 16, 30, 30
    pw, ph = w - left - right, h - top - bottom
    if pw < 10 or ph < 10:
        raise DreamvidError(f"preview size {w}x{h} is too small")
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.05 if hi > lo else max(abs(lo) * 0.05, 0.5)
    vlo, vhi = lo - pad, hi + pad

    def px(t: float) -> int:
        return left + (int(round(t / (frames - 1) * (pw - 1))) if frames > 1 else pw // 2)

    def py(v: float) -> int:
        return top + int(round((vhi - v) / (vhi - vlo) * (ph - 1)))

    img = np.full((h, w, 3), 255, np.uint8)
    font, grey, dark, blue, red = cv2.FONT_HERSHEY_SIMPLEX, (225, 225, 225), (60, 60, 60), (180, 90, 20), (40, 40, 200)
    cv2.rectangle(img, (left, top), (left + pw - 1, top + ph - 1), (248, 248, 248), -1)
    for v in (lo, hi):  # guides at min and max
        cv2.line(img, (left, py(v)), (left + pw - 1, py(v)), grey, 1)
    marks = () if sched.bare else sched.keyframes
    for k in marks:  # keyframe markers
        if 0 <= k < frames:
            x = px(k)
            for y in range(top, top + ph, 6):
                cv2.line(img, (x, y), (x, min(y + 2, top + ph - 1)), (170, 170, 170), 1)
    cv2.line(img, (left, top), (left, top + ph - 1), dark, 1)  # axes
    cv2.line(img, (left, top + ph - 1), (left + pw - 1, top + ph - 1), dark, 1)
    pts = np.array([[px(t), py(v)] for t, v in enumerate(ys)], np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [pts], False, blue, 2, cv2.LINE_AA)
    for k in marks:
        if 0 <= k < frames:
            cv2.circle(img, (px(k), py(ys[k])), 4, red, -1, cv2.LINE_AA)

    def label(text: str, org: Tuple[int, int], scale: float = 0.42, color=dark, align_right: bool = False) -> None:
        text = text.encode("ascii", "replace").decode()
        if align_right:
            (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
            org = (org[0] - tw, org[1])
        cv2.putText(img, text, org, font, scale, color, 1, cv2.LINE_AA)

    label(f"{hi:.4g}", (left - 6, py(hi) + 5), align_right=True)
    if hi != lo:
        label(f"{lo:.4g}", (left - 6, py(lo) + 5), align_right=True)
    label("0", (left - 3, top + ph + 16))
    label(f"{frames - 1}", (left + pw - 1, top + ph + 16), align_right=True)
    label(f"frame ({frames} at {fps:g} fps)", (left + pw // 2 - 60, top + ph + 16), color=(120, 120, 120))
    title = f"{name} = {sched.text}"
    label(_short(title, 88), (8, 19), scale=0.47, color=(0, 0, 0))
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise DreamvidError(f"cannot encode the preview of {name} as PNG")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with open(path, "wb") as f:
            f.write(buf.tobytes())
    except OSError as e:
        raise DreamvidError(f"cannot write {path}: {e.strerror or e}") from None
    return path
