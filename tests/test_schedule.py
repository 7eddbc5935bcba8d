"""Keyframe schedules: interpolation, expressions, layer steps, refusals, fuzzing and the preview plot."""
from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import time

import cv2
import pytest

from dreamvid import schedule
from dreamvid.errors import DreamvidError
from dreamvid.schedule import at, parse, parse_steps, preview, validate

# ---------------------------------------------------------------------------------------------
# Guards: an audit hook that records anything a parse or an evaluation might do to the process
# (exec, imports, opening files, os.system, subprocesses...), and an alarm against hangs.

_AUDIT = {"on": False, "events": []}
_HOOKED = False


def _hook(event: str, args: tuple) -> None:
    # ast.parse raises the "compile" event (it compiles to a syntax tree only); anything else is a finding.
    if _AUDIT["on"] and event != "compile":
        _AUDIT["events"].append(event)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in an empty folder, recording audited actions; asserts afterwards that nothing happened."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_hook)
        _HOOKED = True
    monkeypatch.chdir(tmp_path)
    _AUDIT["events"] = []

    @contextlib.contextmanager
    def watch():
        _AUDIT["on"] = True
        try:
            yield
        finally:
            _AUDIT["on"] = False

    yield watch
    assert _AUDIT["events"] == [], f"parsing did something: {sorted(set(_AUDIT['events']))}"
    assert os.listdir(tmp_path) == [], f"files appeared: {os.listdir(tmp_path)}"


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail instead of hanging (SIGALRM where available) and check the elapsed time."""
    use_alarm = hasattr(signal, "setitimer") and sys.platform != "win32"
    if use_alarm:
        def on_alarm(signum, frame):
            raise TimeoutError(f"took longer than {seconds} s")
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    assert time.perf_counter() - start < seconds


# ---------------------------------------------------------------------------------------------
# Interpolation


def test_linear_keyframes_at_between_before_after():
    z = parse("0:(1.0), 48:(1.05), 96:(1.0)", "motion.zoom")
    assert z(0, 12) == 1.0
    assert z(48, 12) == 1.05
    assert z(96, 12) == 1.0
    assert z(24, 12) == pytest.approx(1.025)
    assert z(12, 12) == pytest.approx(1.0125)
    assert z(72, 12) == pytest.approx(1.025)
    assert z(500, 12) == 1.0  # after the last keyframe the last value holds
    first = parse("10:(2), 20:(4)")
    assert first(0, 12) == 2.0 and first(9, 12) == 2.0  # before the first keyframe the first value holds
    assert first(15, 12) == pytest.approx(3.0)
    assert first(20, 12) == 4.0 and first(1000, 12) == 4.0
    assert z.keyframes == (0, 48, 96) and z.mode == "linear" and not z.constant


def test_smooth_and_step_interpolation():
    sm = parse("smooth: 0:(1), 48:(2)")
    assert sm.mode == "smooth"
    assert sm(0, 12) == 1.0 and sm(48, 12) == 2.0 and sm(60, 12) == 2.0
    assert sm(24, 12) == pytest.approx(1.5)  # smoothstep(0.5) = 0.5
    assert sm(12, 12) == pytest.approx(1 + 0.15625)  # smoothstep(0.25) = 0.25**2 * (3 - 0.5)
    assert sm(36, 12) == pytest.approx(1 + 0.84375)
    assert parse("SMOOTH : 0:(1), 48:(2)")(12, 12) == pytest.approx(1.15625)
    assert parse("linear: 0:(1), 48:(2)")(12, 12) == pytest.approx(1.25)
    st = parse("step: 0:(10), 5:(4), 9:(1)")
    assert [st(t, 12) for t in (0, 4, 5, 8, 9, 100)] == [10, 10, 4, 4, 1, 1]


def test_keyframes_sorted_and_trailing_comma():
    a = parse("48:(2), 0:(1),")
    assert a.keyframes == (0, 48) and a(24, 12) == pytest.approx(1.5)
    assert parse("0:(1)\n, 10:(2)")(5, 12) == pytest.approx(1.5)  # whitespace and newlines are fine


def test_expressions_in_t_s_fps():
    assert at("t", 7, 12) == 7.0
    assert at("s", 6, 12) == 0.5
    assert at("fps * 2", 0, 24) == 48.0
    assert at("2 ** 3 + 7 // 2 - 7 % 4 + -1", 0, 12) == 8 + 3 - 3 - 1
    assert at("clamp(t / 10, 0, 1)", 25, 12) == 1.0
    assert at("min(t, 3, 5) + max(1, 2) + abs(-2) + floor(2.7) + ceil(2.1) + sqrt(16)", 9, 12) == 3 + 2 + 2 + 2 + 3 + 4
    assert at("exp(0) + log(e) + log(8, 2) + cos(0) + tan(0)", 0, 12) == pytest.approx(1 + 1 + 3 + 1)
    assert at("1 if t < 5 else 2", 4, 12) == 1.0 and at("1 if t < 5 else 2", 5, 12) == 2.0
    assert at("(t >= 3) * 10", 3, 12) == 10.0 and at("2 < t <= 4", 5, 12) == 0.0
    # keyframe values are evaluated at the current frame, then interpolated
    k = parse("0:(t), 10:(100 + s)")
    assert k(0, 10) == 0.0
    assert k(5, 10) == pytest.approx(0.5 * 5 + 0.5 * (100 + 0.5))
    assert k(20, 10) == pytest.approx(102.0)


def test_bare_expression():
    pulse = parse("1 + 0.05*sin(2*pi*s)", "motion.zoom")
    assert pulse(0, 24) == pytest.approx(1.0)
    assert pulse(6, 24) == pytest.approx(1.05)  # s = 0.25
    assert pulse(18, 24) == pytest.approx(0.95)
    assert not pulse.constant and pulse.bare
    music = parse("1 + 0.1*abs(sin(pi*s*2))")
    assert music(6, 24) == pytest.approx(1.1)


def test_numbers_constants_and_cache():
    assert at(1.5, 99, 12) == 1.5 and at(2, 0, 12) == 2.0
    assert parse(3).constant and parse("2.5").constant and parse("pi / 2").constant
    assert parse("fps / 2").constant  # fixed for a render
    assert parse("0:(1), 48:(1)").constant
    assert not parse("0:(1), 48:(2)").constant and not parse("t").constant
    assert parse("0:(1), 48:(2)", "a") is parse("0:(1), 48:(2)", "a")
    for bad in (None, True, float("nan"), float("inf"), [1.0]):
        with pytest.raises(DreamvidError, match="motion.tx"):
            parse(bad, "motion.tx")
    with pytest.raises(DreamvidError, match="fps"):
        at("t", 1, 0)


def test_validate_names_setting_and_frame():
    validate("0:(1), 48:(1 + t/100)", "motion.zoom", 100, 12)
    validate(1.25, "motion.zoom", 10, 12)
    bad = "0:(1), 10:(1/(t - 20))"
    validate(bad, "coherence.blend", 20, 12)  # frames 0..19 are fine
    with pytest.raises(DreamvidError, match=r"coherence\.blend.*at frame 20.*division by zero"):
        validate(bad, "coherence.blend", 30, 12)
    with pytest.raises(DreamvidError, match=r"dream\.step.*at frame 101.*exponent"):
        validate("2 ** t", "dream.step", 200, 12)
    with pytest.raises(DreamvidError, match=r"math domain error"):
        validate("sqrt(10 - t)", "dream.jitter", 12, 12)
    with pytest.raises(DreamvidError, match=r"too large"):
        validate("exp(t)", "dream.jitter", 1000, 12)
    with pytest.raises(DreamvidError, match=r"1e308\*10.*not a finite number"):
        validate("1e308*10", "x", 1, 12)


# ---------------------------------------------------------------------------------------------
# Step schedules (dream layers)


def test_step_schedule_layers():
    layers = parse_steps("0:(blocks.10), 48:(blocks.7+blocks.4)")
    assert layers(0) == ["blocks.10"] and layers(47) == ["blocks.10"]
    assert layers(48) == ["blocks.7", "blocks.4"] and layers(1000) == ["blocks.7", "blocks.4"]
    late = parse_steps("10:(features.29), 20:( features.20 + features.9 )")
    assert late(0) == ["features.29"] and late(25) == ["features.20", "features.9"]
    assert parse_steps("blocks.10")(5) == ["blocks.10"]
    assert parse_steps("layer3 + layer4")(0) == ["layer3", "layer4"]
    assert parse_steps(["0:(blocks.10), 48:(blocks.4)"])(50) == ["blocks.4"]
    assert parse_steps(["blocks.10", "blocks.4"])(0) == ["blocks.10", "blocks.4"]
    out = layers(0)
    out.append("x")
    assert layers(0) == ["blocks.10"]  # callers get a fresh list
    for bad, msg in [("", "empty"), ("0:(blocks.10), 0:(blocks.4)", "twice"), ("0:(blocks.10+)", "empty layer"),
                     ("0:(os.system('x'))", "not a layer name"), ("smooth: 0:(a), 5:(b)", "step"),
                     ("0:(a), -5:(b)", "negative"), ("0:(a", "unbalanced"), (["a", "0:(b)"], "only item")]:
        with pytest.raises(DreamvidError, match=msg):
            parse_steps(bad, "dream.layers")


# ---------------------------------------------------------------------------------------------
# Refusals: hostile input is refused with a message naming the part, and nothing is executed

HOSTILE = [
    ("(1).__class__", "attribute access is not allowed: '(1).__class__'"),
    ("__import__('os').system('touch pwned')", "attribute access is not allowed"),
    ("0:(__import__('os'))", "name '__import__' is not allowed; allowed: t, s, fps, sin"),
    ("__import__('os')", "name '__import__' is not allowed"),
    ("open('pwned', 'w')", "name 'open' is not allowed"),
    ("exec(\"open('pwned', 'w')\")", "name 'exec' is not allowed"),
    ("eval('1')", "name 'eval' is not allowed"),
    ("getattr(t, 'real')", "name 'getattr' is not allowed"),
    ("lambda: open('pwned', 'w')", "lambda is not allowed"),
    ("0:(lambda: 1)", "lambda is not allowed"),
    ("[open('pwned', 'w') for _ in (1,)]", "comprehension is not allowed"),
    ("sum(x for x in (1, 2))", "name 'sum' is not allowed"),
    ("__builtins__", "name '__builtins__' is not allowed"),
    ("t.__class__.__bases__", "attribute access is not allowed"),
    ("sin.__globals__", "attribute access is not allowed"),
    ("[1, 2][0]", "subscript is not allowed"),
    ("'touch pwned'", "string is not allowed"),
    ("sin(x=1)", "keyword arguments are not allowed"),
    ("sin(*(1,))", "unpacking is not allowed"),
    ("(x := 1)", "assignment"),
    ("1 and 2", "'and' / 'or' is not allowed"),
    ("1 << 40", "operator in '1 << 40' is not allowed"),
    ("1 in t", "comparisons are < <= > >= == !="),
    ("t is 1", "operator in 't is 1' is not allowed"),
    ("not t", "operator in 'not t' is not allowed"),
    ("9**9**9", "exponent 3.8742e+08 is too large"),
    ("10 ** 1000", "too large"),
    ("9" * 400, "too large"),
    ("(" * 1000 + "1" + ")" * 1000, "nested deeper than 50"),
    ("-" * 3000 + "1", "nested too deeply"),
    ("+".join(["t"] * 2000), "nested too deeply"),
    ("1" * 20000, "too long"),
    ("foo + 1", "name 'foo' is not allowed"),
    ("sin", "'sin' is a function"),
    ("t(2)", "'t' is not a function"),
    ("min(1)", "min() takes at least 2 arguments"),
    ("sin(1, 2)", "sin() takes 1 argument"),
    ("sin(1", "unbalanced brackets: '(' at character 4 is never closed"),
    ("sin(1))", "unbalanced brackets: ')' at character 7 closes nothing"),
    ("0:(1], 5:(2)", "unbalanced brackets"),
    ("", "empty schedule"),
    ("   ", "empty schedule"),
    ("1 +", "cannot read"),
    ("1 2", "cannot read"),
    ("True", "only numbers"),
    ("1j", "only numbers"),
    ("1e999", "too large"),
    ("1, 2", "tuple"),
    ("\x00", "cannot read"),
]

BROKEN_KEYFRAMES = [
    ("0:(1), 0:(2)", "keyframe frame 0 appears twice"),
    ("-5:(1)", "keyframe frame '-5' is negative"),
    ("0:(1), -5:(2)", "negative"),
    ("1.5:(1)", "keyframe frame '1.5' is not a whole number"),
    ("t:(1)", "not a whole number"),
    ("0:1", "must be in one pair of parentheses"),
    ("0:(1)+(2)", "must be in one pair of parentheses"),
    ("0:(1),,5:(2)", "empty keyframe"),
    ("0:(), 5:(1)", "keyframe 0 has an empty value"),
    ("0:(1), 5", "needs the form FRAME:(VALUE)"),
    ("0:(1), 5:(2):(3)", "needs the form FRAME:(VALUE)"),
    ("cubic: 0:(1), 5:(2)", "unknown interpolation 'cubic'"),
    ("0:(1), 99999999999:(2)", "too large"),
    ("0:(1), 5:(nope)", "name 'nope' is not allowed"),
]


@pytest.mark.parametrize("text,message", HOSTILE + BROKEN_KEYFRAMES, ids=lambda v: repr(v)[:40])
def test_refused_with_clear_message_and_nothing_executed(text, message, sandbox):
    with sandbox(), time_limit(2.0):
        with pytest.raises(DreamvidError) as err:
            validate(text, "motion.zoom", 5, 12)
    assert message in str(err.value)
    assert str(err.value).startswith('motion.zoom: schedule "')
    assert "\n" not in str(err.value)


def test_fuzz_never_crashes_hangs_or_executes(sandbox):
    rng = random.Random(20240607)
    soup = (list("0123456789") + list("+-*/%()[]{},:.'\" _=<>!~&|^@;\n") + list("abcxyzjJ")
            + ["**", "//", "1e308", "1e-3", "0x1F", "9**9**9", " if ", " else ", "lambda", " for ", " in ",
               "not ", " and ", "True", "None", "...", "smooth:", "step:", "linear:", "48:(", "0:(", "), "]
            + ["t", "s", "fps", "pi", "e", "tau", "sin(", "cos(", "clamp(", "min(", "max(", "sqrt(", "log(",
               "exp(", "abs(", "floor(", "ceil(", "smoothstep(", "lerp(", "atan2("]
            + ["__import__", "__class__", "__globals__", "os", "system", "open(", "eval(", "exec(", "getattr(",
               "import ", "globals()", ".__dict__", "'touch pwned'", "print(", "breakpoint()", "input(",
               " is ", " not in ", "await ", "yield ", ":=", "*[", "**{", "f'", "b'", "\\", "#"])
    names = ["t", "s", "fps", "pi", "e", "1", "2.5", "0", "-3", "48"]
    calls = {"sin": 1, "cos": 1, "abs": 1, "sqrt": 1, "exp": 1, "log": 1, "floor": 1, "min": 2, "max": 3,
             "clamp": 3, "smoothstep": 3, "atan2": 2, "tanh": 1, "fract": 1}
    ops = ["+", "-", "*", "/", "//", "%", "**", "<", ">=", "=="]

    def expr(depth: int) -> str:
        if depth <= 0 or rng.random() < 0.3:
            return rng.choice(names)
        if rng.random() < 0.4:
            f = rng.choice(list(calls))
            return f"{f}({', '.join(expr(depth - 1) for _ in range(calls[f]))})"
        a, b = expr(depth - 1), expr(depth - 1)
        return f"({a} {rng.choice(ops)} {b})" if rng.random() < 0.5 else f"-{a} {rng.choice(ops)} {b}"

    def structured() -> str:
        if rng.random() < 0.3:
            return expr(4)
        frames = sorted(rng.sample(range(0, 120), rng.randint(1, 4)))
        body = ", ".join(f"{f}:({expr(3)})" for f in frames)
        return rng.choice(["", "smooth: ", "step: ", "linear:"]) + body

    texts = ["".join(rng.choice(soup) for _ in range(rng.randint(1, 24))) for _ in range(2000)]
    texts += [structured() for _ in range(1000)]
    ok = refused = 0
    slowest = 0.0
    with sandbox(), time_limit(20.0):
        for text in texts:
            start = time.perf_counter()
            try:
                sched = parse(text, "fuzz")
                results = [sched(t, 12.0) for t in (0, 7, 60, 200)]
            except DreamvidError as e:
                assert str(e).startswith("fuzz"), str(e)
                refused += 1
            else:
                assert all(isinstance(r, float) and math.isfinite(r) for r in results), (text, results)
                ok += 1
            slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 1.0
    assert ok > 300 and refused > 1000, (ok, refused)


# ---------------------------------------------------------------------------------------------
# Preview and its command line


def test_preview_png(tmp_path):
    path = preview("smooth: 0:(1.0), 48:(1.5), 96:(1.0)", 120, 24, str(tmp_path / "plots" / "zoom.png"),
                   name="motion.zoom")
    img = cv2.imread(path)
    assert img is not None and img.shape == (240, 640, 3)
    assert (img < 128).any() and (img > 250).any()  # something drawn on a white background
    flat = cv2.imread(preview(1.25, 1, 12, str(tmp_path / "flat.png")))
    assert flat.shape == (240, 640, 3)
    with pytest.raises(DreamvidError, match="motion.angle"):
        preview("0:(sin)", 10, 12, str(tmp_path / "bad.png"), name="motion.angle")
    assert not (tmp_path / "bad.png").exists()


def _cli():
    import importlib.util
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("schedule_preview", os.path.join(here, "scripts", "schedule_preview.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_preview_cli(tmp_path, capsys):
    cli = _cli()
    out = str(tmp_path / "pulse.png")
    assert cli.main(["1 + 0.1*abs(sin(pi*s*2))", "--frames", "48", "--fps", "24", "--out", out,
                     "--name", "motion.zoom"]) == 0
    assert cv2.imread(out).shape == (240, 640, 3)
    assert "max 1.1" in capsys.readouterr().out
    assert cli.main(["0:(__import__('os').system('touch pwned'))", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attribute access is not allowed" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_documented_hydra_overrides_reach_the_parser():
    """The quoting shown in docs/schedules.md gives the schedule string to the settings, unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    p = OverridesParser.create()
    zoom = p.parse_override("motion.zoom='0:(1.0), 48:(1.5), 96:(1.0)'").value()
    assert zoom == "0:(1.0), 48:(1.5), 96:(1.0)" and parse(zoom)(24, 12) == pytest.approx(1.25)
    pulse = p.parse_override("motion.zoom='1 + 0.1*abs(sin(pi*s*2))'").value()
    assert parse(pulse)(6, 24) == pytest.approx(1.1)
    layers = p.parse_override("dream.layers=['0:(blocks.10), 48:(blocks.7+blocks.4)']").value()
    assert parse_steps(layers)(48) == ["blocks.7", "blocks.4"]
    assert schedule.MAX_DEPTH >= 50 and schedule.MAX_LENGTH == 10_000
