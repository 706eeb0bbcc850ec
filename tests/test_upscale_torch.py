"""The torch Real-ESRGAN engine (production GPU upscaler), run on CPU with tiny RRDBNets
saved in the official `.pth` layout and loaded through the same loader as the real x4plus."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # the dev extra installs the gpu extra: these tests always run
from PIL import Image
from skimage import data
from torch import nn

from photogen_pipelines.catalog import Product
from photogen_pipelines.engines.upscale_torch import (
    RRDBNet,
    TorchRealEsrgan,
    cached_rrdbnet,
    infer_config,
    load_rrdbnet,
    select_device_dtype,
    tile_windows,
)
from photogen_pipelines.errors import ModelError
from photogen_pipelines.generation.stages import make_print_master
from tests.contracts import BAD_UPSCALE_INPUTS

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
# Receptive field of the tiny net in input px: conv_first + 3 dense blocks x 5 convs + conv_body
# = 17 at low resolution, plus under 1.5 px for the four convs after the x2 upsamplings.
TINY_RF = 19


def random_net(scale: int = 4, seed: int = 0) -> RRDBNet:
    """A tiny RRDBNet whose weights are strong enough that every conv of the receptive field
    moves the output (default init lets the deep paths fade below fp32 precision, which
    would make the seam tests blind), with outputs around 0.5 +- 0.2."""
    torch.manual_seed(seed)
    net = RRDBNet(**TINY, scale=scale)
    for conv in net.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight, a=0.2)
            nn.init.uniform_(conv.bias, -0.1, 0.1)
    with torch.no_grad():
        for conv in net.body.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight *= 2
        net.conv_last.weight *= 0.1
        net.conv_last.bias += 0.5
    return net


def identity_net() -> RRDBNet:
    """A tiny RRDBNet that computes exactly a nearest-neighbour x4: identity 3x3 kernels on the
    RGB channels, a trunk of zeros (the residual blocks pass their input through)."""
    net = RRDBNet(**TINY)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        for conv, channels in [(net.conv_first, 3), (net.conv_up1, 8), (net.conv_up2, 8), (net.conv_hr, 8), (net.conv_last, 3)]:
            for c in range(channels):
                conv.weight[c, c, 1, 1] = 1
    return net


def save(tmp_path, name: str, payload) -> str:
    path = tmp_path / name
    torch.save(payload, path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory) -> str:
    """A tiny random RRDBNet in the official file layout: {"params_ema": state_dict}."""
    return save(tmp_path_factory.mktemp("models"), "tiny_x4.pth", {"params_ema": random_net().state_dict()})


@pytest.fixture(scope="module")
def identity_pth(tmp_path_factory) -> str:
    return save(tmp_path_factory.mktemp("models"), "identity_x4.pth", {"params_ema": identity_net().state_dict()})


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize((83, 61), Image.LANCZOS))


# --- the architecture and the loader ------------------------------------------------------


def test_full_size_net_has_the_official_x4plus_parameter_names():
    with torch.device("meta"):  # shapes only, no memory
        net = RRDBNet()
    state = net.state_dict()
    # 23 RRDBs x 3 dense blocks x 5 convs x (weight, bias) + 6 convs x (weight, bias) around them
    assert len(state) == 23 * 3 * 5 * 2 + 6 * 2 == 702
    for name in [
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "body.0.rdb1.conv5.bias",
        "body.11.rdb2.conv3.weight",
        "body.22.rdb3.conv5.weight",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.bias",
        "conv_hr.weight",
        "conv_last.bias",
    ]:
        assert name in state
    assert not any(".weight" not in k and ".bias" not in k for k in state)
    assert tuple(state["conv_first.weight"].shape) == (64, 3, 3, 3)
    assert tuple(state["body.0.rdb1.conv5.weight"].shape) == (64, 64 + 4 * 32, 3, 3)
    assert tuple(state["conv_last.weight"].shape) == (3, 64, 3, 3)
    # the published size of RealESRGAN_x4plus ("16.7M parameters")
    assert sum(p.numel() for p in net.parameters()) == 16_697_987
    with torch.device("meta"):
        assert tuple(RRDBNet(scale=2).conv_first.weight.shape) == (64, 12, 3, 3)  # x2plus: pixel-unshuffle by 2
    assert infer_config(state) == {
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": 64,
        "num_block": 23,
        "num_grow_ch": 32,
        "scale": 4,
    }


def reference_forward(state: dict, x: torch.Tensor, num_block: int) -> torch.Tensor:
    """The x4 forward pass transcribed step by step from the published architecture (BasicSR
    `RRDBNet.forward`), on raw tensors: an independent check of the module's wiring."""
    F = torch.nn.functional

    def conv(name, t):
        return F.conv2d(t, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def rdb(p, x):
        x1 = lrelu(conv(f"{p}.conv1", x))
        x2 = lrelu(conv(f"{p}.conv2", torch.cat((x, x1), 1)))
        x3 = lrelu(conv(f"{p}.conv3", torch.cat((x, x1, x2), 1)))
        x4 = lrelu(conv(f"{p}.conv4", torch.cat((x, x1, x2, x3), 1)))
        return conv(f"{p}.conv5", torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x

    feat = conv("conv_first", x)
    body = feat
    for i in range(num_block):
        body = rdb(f"body.{i}.rdb3", rdb(f"body.{i}.rdb2", rdb(f"body.{i}.rdb1", body))) * 0.2 + body
    feat = feat + conv("conv_body", body)
    feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def test_forward_pass_matches_the_published_architecture(tmp_path):
    torch.manual_seed(3)
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4)
    state = {k: v * 3 for k, v in net.state_dict().items()}  # strong weights: every path counts
    net = load_rrdbnet(save(tmp_path, "two_blocks.pth", {"params_ema": state}))
    x = torch.rand(2, 3, 9, 13)
    with torch.inference_mode():
        out = net(x)
        expected = reference_forward(state, x, num_block=2)
    assert out.shape == (2, 3, 36, 52)
    assert expected.std() > 0.01
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["params_ema", "params", "bare"])
def test_loader_reads_the_official_and_plain_layouts(tmp_path, layout):
    state = random_net(seed=1).state_dict()
    path = save(tmp_path, "m.pth", state if layout == "bare" else {layout: state})
    net = load_rrdbnet(path)
    assert (net.scale, len(net.body), net.conv_first.out_channels, net.body[0].rdb1.conv1.out_channels) == (4, 1, 8, 4)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    for key, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_loader_prefers_the_ema_weights_and_converts_device_and_dtype(tmp_path):
    ema, plain = random_net(seed=1).state_dict(), random_net(seed=2).state_dict()
    net = load_rrdbnet(save(tmp_path, "m.pth", {"params": plain, "params_ema": ema}), "cpu", torch.bfloat16)
    assert net.conv_last.weight.dtype == torch.bfloat16
    assert torch.equal(net.conv_last.weight.float(), ema["conv_last.weight"].bfloat16().float())


def test_loader_infers_scale_2_and_the_engine_runs_it_on_odd_sizes(tmp_path):
    path = save(tmp_path, "x2.pth", {"params_ema": random_net(scale=2).state_dict()})
    engine = TorchRealEsrgan(path, device="cpu", tile=16, tile_pad=4, batch=2)
    assert engine.scales == (2,) and engine.net.unshuffle == 2
    out = engine.upscale(np.zeros((21, 35, 3), np.uint8), 2)  # odd sides are padded for the unshuffle
    assert out.shape == (42, 70, 3) and out.dtype == np.uint8


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "RealESRGAN_x4plus.pth"
    with pytest.raises(ModelError, match="RealESRGAN_x4plus.pth") as info:
        TorchRealEsrgan(missing, device="cpu")
    assert str(missing) in str(info.value) and info.value.code == "model_error"


@pytest.mark.parametrize(
    "payload",
    [
        b"this is not a torch file",
        {"params_ema": {"body.0.weight": [1, 2, 3]}},  # no conv_first tensor (e.g. a different net)
        {"conv_first.weight": "nope"},
        "just a string",
    ],
    ids=["text", "other-net", "not-tensors", "not-a-dict"],
)
def test_a_file_that_is_not_rrdbnet_weights_is_named(tmp_path, payload):
    path = tmp_path / "broken.pth"
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        torch.save(payload, path)
    with pytest.raises(ModelError) as info:
        load_rrdbnet(path)
    assert str(path) in str(info.value)


def test_weights_of_the_wrong_shape_are_named(tmp_path):
    state = random_net().state_dict()
    del state["conv_hr.bias"]
    path = save(tmp_path, "partial.pth", {"params_ema": state})
    with pytest.raises(ModelError, match="conv_hr.bias") as info:
        load_rrdbnet(path)
    assert path in str(info.value)
    state = random_net().state_dict()
    state["conv_first.weight"] = torch.zeros(8, 5, 3, 3)  # 5 input channels fit no scale
    with pytest.raises(ModelError, match="partial2.pth"):
        load_rrdbnet(save(tmp_path, "partial2.pth", state))


def test_the_model_is_loaded_once_per_file_device_and_dtype(tiny_pth):
    a = TorchRealEsrgan(tiny_pth, device="cpu")
    b = TorchRealEsrgan(tiny_pth, device="cpu", tile=64)
    assert a.net is b.net is cached_rrdbnet(tiny_pth, "cpu", torch.float32)
    assert cached_rrdbnet(tiny_pth, "cpu", torch.bfloat16) is not a.net
    assert a.version.startswith("tiny_x4.pth RRDBNet x4 1 blocks (torch ") and "float32 on cpu" in a.version


# --- device and dtype ----------------------------------------------------------------------


def test_fp16_is_chosen_on_cuda_only():
    assert select_device_dtype("auto", "auto", cuda_available=False) == (torch.device("cpu"), torch.float32)
    assert select_device_dtype("auto", "auto", cuda_available=True) == (torch.device("cuda"), torch.float16)
    assert select_device_dtype("cpu", "auto", cuda_available=True) == (torch.device("cpu"), torch.float32)
    assert select_device_dtype("cuda:1", "auto", cuda_available=True) == (torch.device("cuda:1"), torch.float16)
    assert select_device_dtype("auto", "bf16", cuda_available=True) == (torch.device("cuda"), torch.bfloat16)
    assert select_device_dtype("auto", "fp32", cuda_available=True)[1] == torch.float32
    with pytest.raises(ModelError, match="no CUDA"):
        select_device_dtype("cuda", "auto", cuda_available=False)
    with pytest.raises(ValueError, match="dtype"):
        select_device_dtype("cpu", "int8", cuda_available=False)
    with pytest.raises(ValueError, match="device"):
        select_device_dtype("warp-drive", "auto", cuda_available=False)


def test_auto_on_this_machine_matches_its_hardware(tiny_pth):
    engine = TorchRealEsrgan(tiny_pth)
    expected = (torch.float16, "cuda") if torch.cuda.is_available() else (torch.float32, "cpu")
    assert (engine.dtype, engine.device.type) == expected
    assert engine.net.conv_first.weight.dtype == engine.dtype


# --- tiling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "tile", "pad"), [(1, 8, 2), (30, 8, 11), (61, 16, 20), (83, 16, 20), (100, 32, 4), (97, 7, 0)])
def test_tile_windows_cover_the_axis_with_equal_windows_and_enough_context(n, tile, pad):
    windows = tile_windows(n, tile, pad)
    assert windows[0][0] == 0 and windows[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))  # cores tile the axis
    assert len({w1 - w0 for _, _, w0, w1 in windows}) == 1  # one window size: tiles batch together
    for c0, c1, w0, w1 in windows:
        assert 0 < c1 - c0 <= max(tile, n if n <= tile + 2 * pad else 0)
        assert w1 - w0 <= tile + 2 * pad
        assert 0 <= w0 <= c0 and c1 <= w1 <= n
        assert w0 == 0 or c0 - w0 >= pad
        assert w1 == n or w1 - c1 >= pad


@pytest.mark.slow
def test_tiled_output_equals_the_untiled_output(tiny_pth, photo):
    h, w = photo.shape[:2]  # 61 x 83: divisible by no tile size used here
    whole = TorchRealEsrgan(tiny_pth, device="cpu", tile=1024).upscale_float(photo, 4)
    tiles = len(tile_windows(h, 16, TINY_RF)) * len(tile_windows(w, 16, TINY_RF))
    assert tiles == 4 * 6
    tiled = TorchRealEsrgan(tiny_pth, device="cpu", tile=16, tile_pad=TINY_RF, batch=5)  # 5 batches, the last partial
    out = tiled.upscale_float(photo, 4)
    assert out.shape == whole.shape == (h * 4, w * 4, 3)
    assert whole.std() > 0.05  # a net that outputs a constant would pass anything
    # Context >= the receptive field: the same numbers, up to float summation order.
    assert np.abs(out - whole).max() < 1e-5
    # In uint8 a value within 1e-5 of a rounding boundary may land one level apart.
    assert np.abs(tiled.upscale(photo, 4).astype(int) - np.clip(whole * 255 + 0.5, 0, 255).astype(int)).max() <= 1
    # ...and the comparison can fail: too little context shows at the seams.
    # (Measured: 0.75 with no context, 0.025 with 8 px, 5e-6 with 16 px, 8e-7 from 18 px on.)
    short = TorchRealEsrgan(tiny_pth, device="cpu", tile=16, tile_pad=8, batch=5).upscale_float(photo, 4)
    assert np.abs(short - whole).max() > 1e-2


def test_tiles_are_pasted_where_they_belong(identity_pth, photo):
    # The identity net is a nearest-neighbour x4, so any misplaced tile, off-by-one crop,
    # swapped axis, channel swap or wrong 0..255 scaling shows as a pixel difference.
    expected = photo.repeat(4, axis=0).repeat(4, axis=1)
    for tile, pad, batch in [(1024, 16, 4), (16, 3, 3), (7, 0, 1), (10, 5, 64)]:
        out = TorchRealEsrgan(identity_pth, device="cpu", tile=tile, tile_pad=pad, batch=batch).upscale(photo, 4)
        assert np.array_equal(out, expected), (tile, pad, batch)


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (9, 40, 3), (37, 23, 3)])
def test_small_and_odd_images(tiny_pth, identity_pth, shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    engine = TorchRealEsrgan(tiny_pth, device="cpu", tile=16, tile_pad=4, batch=2)
    out = engine.upscale(image, 4)
    assert out.shape == (shape[0] * 4, shape[1] * 4, 3) and out.dtype == np.uint8
    identity = TorchRealEsrgan(identity_pth, device="cpu", tile=16, tile_pad=4, batch=2)
    assert np.array_equal(identity.upscale(image, 4), image.repeat(4, axis=0).repeat(4, axis=1))


def test_bf16_by_config_runs_on_cpu(identity_pth, photo):
    out = TorchRealEsrgan(identity_pth, device="cpu", dtype="bf16", tile=32).upscale(photo, 4)
    expected = photo.repeat(4, axis=0).repeat(4, axis=1)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - expected).max() <= 1  # bf16 keeps 8 bits


def test_out_of_memory_is_a_model_error_with_advice(tiny_pth, photo, monkeypatch):
    engine = TorchRealEsrgan(tiny_pth, device="cpu", tile=16, batch=8)

    def oom(x):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "_forward", oom)
    with pytest.raises(ModelError, match=r"lower batch \(8\) or tile \(16\)"):
        engine.upscale(photo, 4)


# --- the Upscaler interface, as the pipeline uses it --------------------------------------


@pytest.mark.parametrize(("image", "message"), BAD_UPSCALE_INPUTS)
def test_bad_input_is_a_clear_value_error(tiny_pth, image, message):
    with pytest.raises(ValueError, match=message):
        TorchRealEsrgan(tiny_pth, device="cpu").upscale(image, 4)


def test_unsupported_scale_and_bad_settings(tiny_pth, photo):
    engine = TorchRealEsrgan(tiny_pth, device="cpu")
    assert engine.scales == (4,)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        engine.upscale(photo, 2)
    for bad in [{"tile": 0}, {"tile_pad": -1}, {"batch": 0}]:
        with pytest.raises(ValueError):
            TorchRealEsrgan(tiny_pth, device="cpu", **bad)


def test_make_print_master_runs_on_the_torch_engine(identity_pth):
    product = Product(id="mini", name="Mini", width_in=2, height_in=3, bleed_mm=2, price_cents=100)
    proof = np.asarray(Image.fromarray(data.astronaut()).resize((171, 256), Image.LANCZOS))
    engine = TorchRealEsrgan(identity_pth, device="cpu", tile=64, tile_pad=8, batch=3)
    master, info = make_print_master(proof, product, engine, target_dpi=300, max_passes=2)
    assert master.size == product.pixel_size == (647, 947)
    assert info.passes == [4] and info.native_size == (684, 1024)
    back = np.asarray(master.resize(proof.shape[1::-1], Image.LANCZOS), dtype=float)
    assert np.abs(back - proof).mean() < 6  # the master is the proof, larger


def test_the_upscale_resource_selects_the_torch_backend(tiny_pth):
    from resources import UpscaleEngine, UpscaleEngineConfig

    options = {"backend": "torch", "model_path": str(tiny_pth), "tile": 32, "batch": 2}
    engine = UpscaleEngine(settings=UpscaleEngineConfig(**options)).upscaler()
    assert isinstance(engine, TorchRealEsrgan) and engine.scales == (4,)
    assert engine is UpscaleEngine(settings=UpscaleEngineConfig(**options)).upscaler()  # cached
    with pytest.raises(ModelError, match="needs model_path"):
        UpscaleEngine(settings=UpscaleEngineConfig(backend="torch")).upscaler()
