import copy

import pytest
import torch
from torch import nn

from dreamvid import dream as D
from dreamvid import fast
from dreamvid.model import MODELS, RANDOM, FeatureNet, feature_net, layer_names, load_backbone
from dreamvid.errors import DreamvidError

LAYERS = ["blocks.4"]


@pytest.fixture(scope="module")
def feats():
    return feature_net("lite0", LAYERS)


def image(h=48, w=64, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def cosine(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_auto_on_a_cpu_is_fp32_channels_last_with_folded_batch_norms():
    for name in ("lite0", "googlenet", "vgg16"):
        assert fast.plan(name, "cpu") == fast.Plan("fp32", True, False, True)
    assert fast.plan("lite0", "cpu", fold_bn="off", channels_last="off").plain
    plain_step = fast.plan("vgg16", "cpu", channels_last="off")
    assert plain_step.plain_step and not plain_step.plain
    stepper = fast.Stepper(plain_step)
    x = image()

    def energy(v):
        return v.pow(3).sum()

    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(stepper(x, energy, step=1.0, jitter=8, generator=g1),
                       D.dream_step(x, energy, step=1.0, jitter=8, generator=g2))


def test_auto_on_cuda_follows_the_measurements():
    # plan() only reads the device type: no GPU is touched
    assert fast.plan("vgg16", "cuda") == fast.Plan("bf16", True, True, True)
    assert fast.plan("googlenet", "cuda") == fast.Plan("fp32", False, True, True)
    assert fast.plan("lite0", "cuda") == fast.Plan("fp32", False, True, True)
    assert fast.plan("googlenet", "cuda", precision="bf16") == fast.Plan("bf16", True, True, True)
    assert fast.plan("vgg16", "cuda", graphs="off", channels_last="off", fold_bn="off") == fast.Plan("bf16")


def test_bad_settings_say_how_to_fix_them():
    with pytest.raises(DreamvidError, match="speed.precision must be one of auto, fp32, bf16"):
        fast.plan("lite0", "cpu", precision="fp16")
    with pytest.raises(DreamvidError, match="needs a CUDA device"):
        fast.plan("lite0", "cpu", graphs="on")
    with pytest.raises(DreamvidError, match="speed.channels_last"):
        fast.plan("lite0", "cpu", channels_last="yes")
    with pytest.raises(DreamvidError, match="speed.fold_bn must be one of auto, on, off"):
        fast.plan("lite0", "cpu", fold_bn="yes")
    with pytest.raises(DreamvidError, match="speed.cudnn_benchmark=on needs a CUDA device"):
        fast.plan("lite0", "cpu", cudnn_benchmark="on")


def test_cudnn_benchmark_is_asked_for_and_off_until_measured():
    assert not fast.plan("vgg16", "cuda").cudnn_benchmark  # fast.CUDNN_BENCHMARK_MODELS is empty so far
    tuned = fast.plan("vgg16", "cuda", cudnn_benchmark="on")
    assert tuned.cudnn_benchmark and tuned.describe().endswith("cudnn.benchmark")


@pytest.mark.parametrize("name", MODELS)
def test_folding_batch_norms_keeps_every_layer_of_every_model(name):
    net = copy.deepcopy(load_backbone(name, RANDOM))
    g = torch.Generator().manual_seed(0)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:  # statistics far from the identity, so that a wrong fold shows
        c = m.num_features
        m.running_mean.copy_(0.3 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))
        m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
        m.bias.data.copy_(0.2 * torch.randn(c, generator=g))
    layers = list(layer_names(name))
    plain = FeatureNet(net, layers, model_name=name)
    folded = fast.prepare(plain, fast.Plan(fold_bn=True))
    # all folded but a batch norm after a convolution whose own output is dreamed (ResNet's conv1)
    tapped, units = plain.tapped_modules(), list(getattr(plain, "units", []))
    kept = sum(isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and any(a is t for t in tapped)
               for a, b in zip(units, units[1:]))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == kept == (name == "resnet50")
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) == bool(norms)  # the original stays
    x = image(128, 128)
    with torch.no_grad():
        a, b = plain(x), folded(x)
    for layer in layers:
        assert (a[layer] - b[layer]).abs().max() <= 1e-4 * a[layer].abs().max() + 1e-6, layer
    # dreaming the deepest layer only, every batch norm folds (ResNet's conv1 too)
    deepest = FeatureNet(net, layers[-1:], model_name=name)
    folded = fast.prepare(deepest, fast.Plan(fold_bn=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        b = folded(x)[layers[-1]]
    assert (a[layers[-1]] - b).abs().max() <= 1e-4 * a[layers[-1]].abs().max() + 1e-6


def test_fp32_fast_step_equals_the_plain_step(feats):
    """The rolled formulation (roll, step, roll back as one update) with channels_last, in fp32."""
    p = fast.Plan("fp32", True, False)
    stepper, net = fast.Stepper(p), fast.prepare(feats, p)
    x = image()
    ref = D.dream_step(x, D.make_objective(feats, LAYERS), jitter=16, generator=torch.Generator().manual_seed(5))
    out = stepper(x, D.make_objective(net, LAYERS), jitter=16, generator=torch.Generator().manual_seed(5))
    assert (out - ref).abs().max() < 1e-5
    assert out.shape == x.shape and not torch.equal(out, x)


def test_bf16_gradient_and_step_within_bf16_tolerance(feats):
    """bf16 autocast keeps the gradient's direction (cosine > 0.9) and the step within a third of its size."""
    x = image()
    objective = D.make_objective(feats, LAYERS)
    g32 = fast.Stepper(fast.Plan()).gradient(x, objective)
    p = fast.Plan("bf16", True, False)
    low = fast.Stepper(p)
    g16 = low.gradient(x, D.make_objective(fast.prepare(feats, p), LAYERS))
    assert g16.dtype == torch.float32 and cosine(g16, g32) > 0.9
    ref = D.dream_step(x, objective, step=1.5, jitter=0)
    out = low(x, D.make_objective(fast.prepare(feats, p), LAYERS), step=1.5, jitter=0)
    assert out.dtype == torch.float32
    change = (ref - x).abs().mean()
    assert (out - ref).abs().mean() < 0.35 * change


def test_prepare_copies_instead_of_changing_the_shared_backbone(feats):
    p = fast.Plan("fp32", True, False)
    net = fast.prepare(feats, p)
    conv = load_backbone("lite0").conv_stem.weight
    assert conv.is_contiguous() and net is not feats
    assert net.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.prepare(feats, fast.Plan()) is feats


def test_dream_takes_a_step_function(feats):
    calls = []

    def step_fn(x, objective, *, step, jitter, generator):
        calls.append(x.shape[-2:])
        return D.dream_step(x, objective, step=step, jitter=jitter, generator=generator)

    D.dream(image(), D.make_objective(feats, LAYERS), octaves=2, iterations=2, step_fn=step_fn)
    assert len(calls) == 4


def test_dreamer_uses_the_fast_path_and_matches_plain_on_a_cpu(cfg_factory):
    from dreamvid.pipeline.dreamer import dreamer

    x = image()
    s = {"octaves": 2, "octave_scale": 1.4, "iterations": 2, "step": 1.5, "jitter": 8, "guide_weight": 1.0}
    ref = D.dream(x, D.make_objective(feature_net("lite0", ["blocks.4"]), ["blocks.4"]), octaves=2,
                  iterations=2, step=1.5, jitter=8, generator=D.image_generator(0, 3))
    plain = dreamer(cfg_factory("model.layers=[blocks.4]", "speed.tile=0", "speed.fold_bn=off",
                                "speed.channels_last=off", "seed=0"), torch.device("cpu"))
    assert torch.equal(plain(x, 3, s), ref)
    fast_path = dreamer(cfg_factory("model.layers=[blocks.4]", "speed.tile=0", "seed=0"), torch.device("cpu"))
    out = fast_path(x, 3, s)  # channels_last and folded batch norms
    assert 0 < (out - ref).abs().max() < 1e-4  # the same dream up to float rounding


def step_both(graphed, other, objective, x, jitter):
    """The same steps on two paths: WARMUP_STEPS eager steps, the capture and replays on the graphed one."""
    a = b = x
    for i in range(fast.WARMUP_STEPS + 3):
        a = graphed(a, objective, step=1.5, jitter=jitter, generator=torch.Generator().manual_seed(i))
        b = other(b, objective, step=1.5, jitter=jitter, generator=torch.Generator().manual_seed(i))
    return a, b


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_graphed_steps_equal_eager_steps_on_cuda():
    net = copy.deepcopy(feature_net("lite0", LAYERS)).cuda()  # a copy: the CPU tests share the backbone
    objective = D.make_objective(net, LAYERS)
    graphed = fast.Stepper(fast.Plan("fp32", False, True))
    eager = fast.Stepper(fast.Plan())  # dream.dream_step itself
    sizes = [(96, 128), (68, 91)]
    for h, w in sizes:
        x = image(h, w).cuda()
        a, b = step_both(graphed, eager, objective, x, 8)
        assert (a - b).abs().max() < 1e-3  # TF32 convolutions; a stale graph input would be off by ~1e-2
        g = graphed.gradient(x, objective)
        for _ in range(fast.WARMUP_STEPS):
            g = graphed.gradient(x, objective)
        assert cosine(g.clone(), eager.gradient(x, objective)) > 0.9999
    assert graphed.captures == 2 * len(sizes)  # one step graph and one gradient graph per shape
    # a new objective drops the old graphs; stepping goes on
    other = D.make_objective(net, LAYERS, weights=[2.0])
    assert graphed(x, other, step=1.5, jitter=0).shape == x.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_graphs_are_bounded_and_the_least_recently_replayed_dropped_on_cuda(monkeypatch):
    monkeypatch.setattr(fast, "MAX_GRAPHS", 2)  # as a scheduled octave_scale gives new shapes each frame
    net = copy.deepcopy(feature_net("lite0", LAYERS)).cuda()
    objective = D.make_objective(net, LAYERS)
    graphed, eager = fast.Stepper(fast.Plan("fp32", False, True)), fast.Stepper(fast.Plan())
    for h, w in [(64, 96), (72, 96), (80, 96), (64, 96)]:
        a, b = step_both(graphed, eager, objective, image(h, w).cuda(), 4)
        assert (a - b).abs().max() < 1e-3
        assert len(graphed._graphs) <= 2
    assert graphed.captures == 4  # 64x96 was dropped for 80x96, then warmed up and captured again


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_channel_objectives_are_captured_and_equal_eager_steps_on_cuda():
    net = copy.deepcopy(feature_net("lite0", LAYERS)).cuda()
    objective = D.make_objective(net, LAYERS, channels=[[0, 3, 5]])
    graphed, eager = fast.Stepper(fast.Plan("fp32", False, True)), fast.Stepper(fast.Plan())
    x = image(64, 96).cuda()
    a, b = step_both(graphed, eager, objective, x, 4)
    assert graphed.captures == 1
    assert (a - b).abs().max() < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_a_per_pixel_step_weight_over_graphed_steps_equals_eager_on_cuda():
    """Video's touch-up weights each pixel's step outside the graph (`dream.dream`'s step_weight)."""
    net = copy.deepcopy(feature_net("lite0", LAYERS)).cuda()
    objective = D.make_objective(net, LAYERS)
    graphed, eager = fast.Stepper(fast.Plan("fp32", False, True)), fast.Stepper(fast.Plan())
    x = image(64, 96).cuda()
    weight = torch.linspace(0, 1, 96, device="cuda").expand(1, 1, 64, 96)
    kw = dict(octaves=2, iterations=fast.WARMUP_STEPS + 3, step=1.5, jitter=4, step_weight=weight)
    a = D.dream(x, objective, step_fn=graphed, generator=torch.Generator().manual_seed(0), **kw)
    b = D.dream(x, objective, step_fn=eager, generator=torch.Generator().manual_seed(0), **kw)
    assert graphed.captures == 2  # one per octave
    assert (a - b).abs().max() < 2e-3  # twelve steps over two octaves
    assert float((a - x)[..., :4].abs().mean()) < 0.1 * float((a - x)[..., -4:].abs().mean())  # weight ~0 vs 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_an_objective_that_cannot_be_captured_still_dreams_on_cuda():
    import warnings

    net = copy.deepcopy(feature_net("lite0", LAYERS)).cuda()
    plain = D.make_objective(net, LAYERS)

    def objective(x):
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("this objective cannot be captured")
        return plain(x)

    graphed, eager = fast.Stepper(fast.Plan("fp32", False, True)), fast.Stepper(fast.Plan())
    x = image(64, 96).cuda()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, b = step_both(graphed, eager, objective, x, 4)
    assert graphed.captures == 0
    assert [str(w.message) for w in caught if "cannot be captured" in str(w.message)]
    assert (a - b).abs().max() < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_bf16_channels_last_graphed_steps_equal_their_eager_steps_on_cuda():
    net = copy.deepcopy(feature_net("lite0", LAYERS)).cuda()
    p = fast.Plan("bf16", True, True)
    net = fast.prepare(net, p)
    objective = D.make_objective(net, LAYERS)
    graphed, eager = fast.Stepper(p), fast.Stepper(fast.Plan("bf16", True, False))
    x = image(96, 128).cuda()
    a, b = step_both(graphed, eager, objective, x, 8)
    assert graphed.captures == 1
    assert (a - b).abs().max() < 2e-3  # the same kernels; a stale graph input would be off by ~1e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_graphs_replay_each_frames_scheduled_layer_weights_on_cuda(cfg_factory):
    from dreamvid.pipeline.dreamer import dreamer

    layers = ["blocks.4", "blocks.6"]
    cfg = cfg_factory("model.layers=[blocks.4,blocks.6]", "dream.layer_weights=[1,'0:(0), 4:(2)']",
                      "speed.tile=0", "speed.graphs=on", "speed.precision=fp32", "speed.channels_last=off")
    dream_frame = dreamer(cfg, torch.device("cuda"))
    net = copy.deepcopy(feature_net("lite0", layers)).cuda()
    x = image(64, 96).cuda()
    s = {"octaves": 1, "octave_scale": 1.4, "iterations": fast.WARMUP_STEPS + 3, "step": 1.5, "jitter": 8,
         "guide_weight": 1.0}
    for t in (0, 2, 4):  # frame 0 warms up and captures; frames 2 and 4 replay with other weights
        out = dream_frame(x, t, s)
        ref = D.dream(x, D.make_objective(net, layers, [1.0, t / 2]), octaves=1, iterations=s["iterations"],
                      step=1.5, jitter=8, generator=D.image_generator(cfg.seed, t))
        assert (out - ref).abs().max() < 1e-3, t


def test_the_benchmark_runs_and_writes_json(tmp_path):
    import importlib.util
    import json
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "bench.py")
    spec = importlib.util.spec_from_file_location("bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--models", "lite0", "--sizes", "64x48,96x64/tiled", "--speeds", "auto,bf16",
                       "--tile-memory", "0.01", "--e2e-frames", "3", "--device", "cpu",
                       "--threads", str(torch.get_num_threads()), "--json", str(out),
                       "--cadences", "1,3", "--cadence-frames", "7"]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert data["complete"]
    assert [r["path"].split(":")[0] for r in rows] == [
        "end to end (mode=video)", "naive (whole network)", "public (cut at the layer)", "dreamvid auto",
        "dreamvid bf16", "-", "zoom cadence=1", "zoom cadence=3", "video cadence=1", "video cadence=3"]
    e2e, cadence, rows = rows[0], rows[6:], rows[1:6]
    assert all(r["fps"] > 0 and r["flops_per_frame"] > 0 for r in rows[:4])
    assert rows[0]["speedup"] == 1 and rows[1]["speedup_public"] == 1 and rows[2]["speedup_public"] > 0
    assert "folded BN" in rows[2]["path"] and rows[2]["diff_from_plain"] < 0.01  # auto on a CPU: rounding only
    assert 0 < rows[3]["diff_from_plain"] < 2 and rows[3]["max_diff_from_plain"] < 32  # bf16: near, not equal
    assert "even in" in rows[4]["error"]  # a configuration that cannot run is a row, the others go on
    assert cadence[0]["fps_x"] == 1 and cadence[1]["fps_x"] > 1.3  # a third of the dreams, even at this size
    assert cadence[0]["keyframe_change"] > 0 and cadence[1]["keyframe_change"] > 0
    assert cadence[2]["fps_x"] == 1 and 0 <= cadence[3]["flicker"] < 2 and cadence[3]["frames"] == 3
    assert e2e["frames"] == 2 and e2e["size"] == "64x48"  # the steady state: the frames after the first
    assert 0 < e2e["fraction_with_startup"] < 1 and 0 < e2e["fraction_of_dream_only"] <= 1
    assert bench.parse_size("4k/tiled") == (3840, 2160, True)
    assert bench.parse_speed("bf16+cl+graphs").graphs == "on"
    full = bench.parse_speed("bf16+cl+graphs+fold+tune")
    assert (full.fold_bn, full.cudnn_benchmark) == ("on", "on")
    assert bench.parse_speed("fp32+eager").fold_bn == "off"


def test_a_time_limit_keeps_the_benchmark_rows_measured_so_far(tmp_path):
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading

    out = tmp_path / "bench.json"
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "bench.py")
    proc = subprocess.Popen([sys.executable, script, "--quick", "--models", "lite0,googlenet,vgg16", "--sizes",
                             "64x48,96x64", "--e2e-frames", "3", "--device", "cpu", "--threads", "1", "--json",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Stop it once it reports its first configuration measured (the JSON is written just before): read
    # from its output rather than polling the file, so a busy machine cannot let it finish first.
    guard = threading.Timer(600, proc.kill)  # the first rows: generous, for a busy machine
    guard.start()
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if re.match(r"\s*\[\s*[\d.]+ s\] ", line):
            break
    proc.send_signal(signal.SIGTERM)  # as `timeout` does
    rest, _ = proc.communicate(timeout=60)
    guard.cancel()
    output = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, output
    data = json.loads(out.read_text())
    assert not data["complete"] and data["rows"][0]["path"] == "end to end (mode=video)"
    assert "STOPPED EARLY" in output and "end to end" in output  # the table of what was measured
