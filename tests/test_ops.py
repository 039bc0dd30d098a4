"""Tests for nas.ops: static extraction equivalence, slicing (not masking), BN stats, reorder."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops import (
    ActivationName,
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicDepthwiseConv2d,
    DynamicLinear,
    DynamicSE,
    ElasticKernelConv,
    GateName,
    SqueezeExcite,
    l1_importance,
    leading_slice,
    make_activation,
    make_divisible,
    make_gate,
    reorder_channels,
    reorder_se_mid_channels,
)

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _randomise_transforms(op: ElasticKernelConv) -> None:
    with torch.no_grad():
        for matrix in op.kernel_transforms.values():
            matrix.add_(0.3 * torch.randn_like(matrix))


def _assert_static_matches(dynamic: nn.Module, static: nn.Module, x: Tensor) -> None:
    dynamic.eval()
    static.eval()
    with torch.no_grad():
        expected = dynamic(x)
        assert (static(x) - expected).abs().max().item() <= ATOL
        with warnings.catch_warnings():  # torch.jit is deprecated but exports still rely on it
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(static)
        assert (scripted(x) - expected).abs().max().item() <= ATOL


def _grad(tensor: Tensor | None) -> Tensor:
    """Narrow optional gradients/buffers for the type checker, failing loudly when absent."""
    assert tensor is not None
    grad = tensor.grad
    assert grad is not None
    return grad


def _crop(weight: Tensor, size: int) -> Tensor:
    start = (weight.size(-1) - size) // 2
    return weight[..., start : start + size, start : start + size]


# --------------------------------------------------------------------------- conv


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize(
    ("in_ch", "out_ch", "k", "stride", "dilation"),
    [(3, 4, 3, 1, 1), (8, 16, 7, 1, 1), (5, 9, 5, 2, 1), (8, 16, 3, 1, 2), (6, 12, 5, 2, 2)],
)
def test_conv_to_static_matches(
    transform: bool, in_ch: int, out_ch: int, k: int, stride: int, dilation: int
) -> None:
    conv = DynamicConv2d(
        max_in_channels=8,
        max_out_channels=16,
        kernel_sizes=(3, 5, 7),
        stride=stride,
        dilation=dilation,
        bias=True,
        kernel_transform=transform,
    )
    if transform:
        _randomise_transforms(conv)
    conv.active_out_channels, conv.active_kernel_size = out_ch, k
    static = conv.to_static(in_ch)
    assert isinstance(static, nn.Conv2d)
    assert static.weight.shape == (out_ch, in_ch, k, k)
    _assert_static_matches(conv, static, torch.randn(2, in_ch, 11, 11))


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize(("channels", "k", "stride"), [(1, 3, 1), (12, 5, 2), (16, 7, 1)])
def test_depthwise_to_static_matches(transform: bool, channels: int, k: int, stride: int) -> None:
    conv = DynamicDepthwiseConv2d(
        max_channels=16, kernel_sizes=[7, 3, 5], stride=stride, kernel_transform=transform
    )
    if transform:
        _randomise_transforms(conv)
    conv.active_kernel_size = k
    static = conv.to_static(channels)
    assert static.groups == channels and static.weight.shape == (channels, 1, k, k)
    _assert_static_matches(conv, static, torch.randn(2, channels, 10, 10))


def test_full_config_passes_parameter_itself() -> None:
    conv = DynamicConv2d(max_in_channels=4, max_out_channels=6, kernel_sizes=[3, 5])
    assert conv.get_active_weight(6, 4, 5) is conv.weight
    dw = DynamicDepthwiseConv2d(max_channels=6, kernel_sizes=[3, 5], kernel_transform=True)
    assert dw.get_active_weight(6, 5) is dw.weight


@pytest.mark.parametrize(
    ("shape", "sizes", "margin"),
    [
        ((16, 8, 7, 7), (6, 5), 2),  # channels and kernel: one crop
        ((16, 8, 1, 1), (6, 5), 0),  # pointwise, both channel dims
        ((16, 1, 5, 5), (9,), 1),  # depthwise channels and kernel
        ((10, 7), (3, 7), 0),  # linear, rows only: a view
        ((12,), (4,), 0),  # BN affine
    ],
)
def test_leading_slice_equals_python_slicing_in_one_node(
    shape: tuple[int, ...], sizes: tuple[int, ...], margin: int
) -> None:
    weight = nn.Parameter(torch.randn(shape))
    index: list[slice] = [slice(0, n) for n in sizes] + [slice(None)] * (len(shape) - len(sizes))
    if margin:
        index[-2] = index[-1] = slice(margin, -margin)
    expected = weight.detach()[tuple(index)]
    got = leading_slice(weight, sizes, margin)
    assert torch.equal(got, expected) and got.is_contiguous()
    only_rows = margin == 0 and tuple(sizes[1:]) == tuple(shape[1 : len(sizes)])
    assert (got.data_ptr() == weight.data_ptr()) == only_rows  # a view exactly when it can be
    assert got.grad_fn is not None and got.grad_fn.next_functions[0][0].variable is weight
    upstream = torch.randn(got.shape)
    got.backward(upstream)
    full = torch.zeros(shape)
    full[tuple(index)] = upstream
    assert torch.equal(_grad(weight), full)
    assert leading_slice(weight, shape) is weight


@pytest.mark.parametrize(
    ("sizes", "margin", "message"),
    [
        ((7, 3), 0, r"sizes\[0\] must be in 1\.\.6, got 7"),
        ((6, 0), 0, r"sizes\[1\] must be in 1\.\.4, got 0"),
        ((6, 4, 5, 5, 1), 0, "more entries than the weight's shape"),
        ((6,), 3, "margin 3 leaves no kernel"),
        ((6,), -1, "margin -1 leaves no kernel"),
    ],
)
def test_leading_slice_rejects_cuts_outside_the_weight(
    sizes: tuple[int, ...], margin: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        leading_slice(torch.zeros(6, 4, 5, 5), sizes, margin)


def test_conv_uses_sliced_weight_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, ...]] = []
    real = F.conv2d

    def spy(x: Tensor, weight: Tensor, *args: Any) -> Tensor:
        seen.append(tuple(weight.shape))
        return real(x, weight, *args)

    monkeypatch.setattr(F, "conv2d", spy)
    conv = DynamicConv2d(max_in_channels=8, max_out_channels=16, kernel_sizes=[3, 5, 7])
    conv.active_out_channels, conv.active_kernel_size = 6, 3
    assert conv(torch.randn(2, 5, 9, 9)).shape == (2, 6, 9, 9)
    dw = DynamicDepthwiseConv2d(max_channels=16, kernel_sizes=[3, 5], stride=2)
    dw.active_kernel_size = 3
    assert dw(torch.randn(2, 6, 9, 9)).shape == (2, 6, 5, 5)
    assert seen == [(6, 5, 3, 3), (6, 1, 3, 3)]


def test_inactive_weight_slices_get_zero_gradient() -> None:
    conv = DynamicConv2d(max_in_channels=8, max_out_channels=16, kernel_sizes=[3, 5], bias=True)
    conv.active_out_channels, conv.active_kernel_size = 6, 3
    conv(torch.randn(2, 5, 7, 7)).square().sum().backward()
    grad, bias_grad = _grad(conv.weight), _grad(conv.bias)
    assert grad[6:].abs().sum() == 0 and grad[:, 5:].abs().sum() == 0
    active = grad[:6, :5]
    ring = active.clone()
    ring[..., 1:4, 1:4] = 0
    assert ring.abs().sum() == 0
    assert (active[..., 1:4, 1:4] != 0).all()
    assert bias_grad[6:].abs().sum() == 0 and (bias_grad[:6] != 0).all()

    linear = DynamicLinear(max_in_features=10, max_out_features=7)
    linear.active_out_features = 3
    linear(torch.randn(4, 6)).sum().backward()
    linear_grad = _grad(linear.weight)
    assert linear_grad[3:].abs().sum() == 0 and linear_grad[:, 6:].abs().sum() == 0
    assert (linear_grad[:3, :6] != 0).all()


def test_kernel_transform_identity_at_init_equals_plain_crop() -> None:
    plain = DynamicConv2d(max_in_channels=4, max_out_channels=6, kernel_sizes=[3, 5, 7])
    tf = DynamicConv2d(
        max_in_channels=4, max_out_channels=6, kernel_sizes=[3, 5, 7], kernel_transform=True
    )
    tf.weight.data.copy_(plain.weight.data)
    assert sorted(tf.kernel_transforms) == ["5to3", "7to5"]
    for matrix in tf.kernel_transforms.values():
        assert torch.equal(matrix, torch.eye(matrix.size(0)))
    x = torch.randn(2, 4, 9, 9)
    for k in (3, 5, 7):
        plain.active_kernel_size = tf.active_kernel_size = k
        assert torch.equal(plain(x), tf(x))
        assert torch.equal(plain.get_active_weight(6, 4, k), _crop(plain.weight, k))


def test_kernel_transform_composes_crop_then_matrix() -> None:
    conv = DynamicConv2d(
        max_in_channels=3, max_out_channels=4, kernel_sizes=[3, 5, 7], kernel_transform=True
    )
    _randomise_transforms(conv)
    m75, m53 = conv.kernel_transforms["7to5"], conv.kernel_transforms["5to3"]
    w5 = (_crop(conv.weight[:2, :3], 5).reshape(-1, 25) @ m75).view(2, 3, 5, 5)
    w3 = (_crop(w5, 3).reshape(-1, 9) @ m53).view(2, 3, 3, 3)
    assert torch.allclose(conv.get_active_weight(2, 3, 5), w5)
    assert torch.allclose(conv.get_active_weight(2, 3, 3), w3)


def test_kernel_transform_gets_gradient_only_when_used() -> None:
    conv = DynamicDepthwiseConv2d(max_channels=8, kernel_sizes=[3, 5, 7], kernel_transform=True)
    x = torch.randn(2, 8, 9, 9)
    conv(x).sum().backward()
    assert all(m.grad is None for m in conv.kernel_transforms.values())
    conv.active_kernel_size = 5
    conv(x).sum().backward()
    assert _grad(conv.kernel_transforms["7to5"]).abs().sum() > 0
    assert conv.kernel_transforms["5to3"].grad is None
    conv.active_kernel_size = 3
    conv(x).sum().backward()
    assert _grad(conv.kernel_transforms["5to3"]).abs().sum() > 0


# --------------------------------------------------------------------------- norm / linear / SE


@pytest.mark.parametrize("features", [1, 5, 16])
def test_bn_to_static_matches(features: int) -> None:
    bn = DynamicBatchNorm2d(16)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    static = bn.to_static(features)
    assert isinstance(static, nn.BatchNorm2d)
    _assert_static_matches(bn, static, torch.randn(3, features, 4, 4))


def test_bn_train_updates_only_active_slice_in_place() -> None:
    bn = DynamicBatchNorm2d(16).train()
    reference = nn.BatchNorm2d(6).train()
    x = torch.randn(8, 6, 5, 5) * 3 + 2
    mean_before = bn.running_mean
    assert torch.allclose(bn(x), reference(x), atol=ATOL)
    assert bn.running_mean is mean_before
    assert reference.running_mean is not None and reference.running_var is not None
    assert torch.allclose(bn.running_mean[:6], reference.running_mean)
    assert torch.allclose(bn.running_var[:6], reference.running_var)
    assert (bn.running_mean[:6] != 0).all() and (bn.running_var[:6] != 1).all()
    assert torch.equal(bn.running_mean[6:], torch.zeros(10))
    assert torch.equal(bn.running_var[6:], torch.ones(10))
    assert bn.num_batches_tracked.item() == 1


def test_bn_cumulative_average_and_reset() -> None:
    bn = DynamicBatchNorm2d(8, momentum=None).train()
    reference = nn.BatchNorm2d(5, momentum=None).train()
    for _ in range(3):
        x = torch.randn(4, 5, 3, 3) + torch.randn(1, 5, 1, 1)
        bn(x)
        reference(x)
    assert reference.running_mean is not None and reference.running_var is not None
    assert torch.allclose(bn.running_mean[:5], reference.running_mean, atol=ATOL)
    assert torch.allclose(bn.running_var[:5], reference.running_var, atol=ATOL)
    assert bn.num_batches_tracked.item() == 3
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(8)) and torch.equal(
        bn.running_var, torch.ones(8)
    )
    assert bn.num_batches_tracked.item() == 0


@pytest.mark.parametrize(("in_f", "out_f", "bias"), [(1, 1, True), (6, 3, False), (10, 7, True)])
def test_linear_to_static_matches(in_f: int, out_f: int, bias: bool) -> None:
    linear = DynamicLinear(max_in_features=10, max_out_features=7, bias=bias)
    linear.active_out_features = out_f
    static = linear.to_static(in_f)
    assert isinstance(static, nn.Linear) and static.weight.shape == (out_f, in_f)
    _assert_static_matches(linear, static, torch.randn(4, in_f))


@pytest.mark.parametrize(("gate", "act"), [("hsigmoid", "relu"), ("sigmoid", "swish")])
@pytest.mark.parametrize("channels", [8, 20, 40])
def test_se_to_static_matches(gate: GateName, act: ActivationName, channels: int) -> None:
    se = DynamicSE(max_channels=40, gate=gate, act=act)
    with torch.no_grad():
        se.reduce_bias.normal_()
        se.expand_bias.normal_()
    static = se.to_static(channels)
    assert isinstance(static, SqueezeExcite)
    assert (
        static.reduce.out_channels == make_divisible(channels // 4, 8) == se.mid_channels(channels)
    )
    _assert_static_matches(se, static, torch.randn(2, channels, 5, 5))


def test_helpers() -> None:
    assert [make_divisible(v, 8) for v in (3, 10, 12, 24, 30, 100)] == [8, 16, 16, 24, 32, 104]
    assert make_divisible(3, 8, min_value=4) == 4
    assert all(make_divisible(v, 8) <= make_divisible(v + 1, 8) for v in range(300))
    expected: dict[ActivationName, type[nn.Module]] = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "swish": nn.SiLU,
        "identity": nn.Identity,
    }
    for name, cls in expected.items():
        assert type(make_activation(name)) is cls
    assert type(make_gate("hsigmoid")) is nn.Hardsigmoid
    with pytest.raises(ValueError, match="relu6"):
        make_activation("gelu")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"kernel_sizes": [3, 4]}, r"kernel_sizes.*odd"),
        ({"kernel_sizes": []}, "kernel_sizes"),
        ({"kernel_sizes": 3, "max_in_channels": 0}, "max_in_channels"),
        ({"kernel_sizes": 3, "max_out_channels": True}, "max_out_channels"),
        ({"kernel_sizes": 3, "stride": 0}, "stride"),
        ({"kernel_sizes": 3, "dilation": 1.5}, "dilation"),
    ],
)
def test_conv_validation_names_argument(kwargs: dict[str, object], pattern: str) -> None:
    full = {"max_in_channels": 4, "max_out_channels": 4, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        DynamicConv2d(**full)  # type: ignore[arg-type]


def test_active_setting_validation() -> None:
    conv = DynamicConv2d(max_in_channels=4, max_out_channels=8, kernel_sizes=[3, 5, 7])
    with pytest.raises(ValueError, match=r"active_kernel_size.*\(3, 5, 7\)"):
        conv.active_kernel_size = 4
    with pytest.raises(ValueError, match="active_out_channels"):
        conv.active_out_channels = 9
    with pytest.raises(ValueError, match="max_in_channels"):
        conv(torch.randn(1, 5, 3, 3))
    with pytest.raises(ValueError, match="in_channels"):
        conv.to_static(0)
    with pytest.raises(ValueError, match="active_out_features"):
        DynamicLinear(max_in_features=2, max_out_features=2).active_out_features = 0
    with pytest.raises(ValueError, match="max_features"):
        DynamicBatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum"):
        DynamicBatchNorm2d(4, momentum=2.0)
    with pytest.raises(ValueError, match="gate"):
        DynamicSE(max_channels=8, gate="tanh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="act"):
        DynamicSE(max_channels=8, act="tanh")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- reorder


def test_reorder_mbconv_chain_preserves_function_and_sorts_importance() -> None:
    c_in, mid = 8, 24
    expand = DynamicConv2d(max_in_channels=c_in, max_out_channels=mid, kernel_sizes=1)
    bn1 = DynamicBatchNorm2d(mid)
    dw = DynamicDepthwiseConv2d(max_channels=mid, kernel_sizes=[3, 5], kernel_transform=True)
    bn2 = DynamicBatchNorm2d(mid)
    se = DynamicSE(max_channels=mid)
    project = DynamicConv2d(max_in_channels=mid, max_out_channels=c_in, kernel_sizes=1)
    net = nn.Sequential(expand, bn1, nn.ReLU(), dw, bn2, nn.ReLU(), se, project)
    _randomise_transforms(dw)
    dw.active_kernel_size = 3
    with torch.no_grad():
        project.weight.mul_(torch.rand(1, mid, 1, 1) * 4)  # make importances distinct
        for bn in (bn1, bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.randn(2, c_in, 6, 6)
    with torch.no_grad():
        before = net(x)
    perm = torch.argsort(l1_importance(project.weight, dim=1), descending=True)
    assert not torch.equal(perm, torch.arange(mid))
    reorder_channels(perm, out_of=[expand, bn1, dw, bn2, se], in_of=[project])
    reorder_se_mid_channels(se)
    with torch.no_grad():
        after = net(x)
    assert (after - before).abs().max().item() <= ATOL
    importance = l1_importance(project.weight, dim=1)
    assert torch.all(importance[:-1] >= importance[1:])
    se_importance = l1_importance(se.expand_weight, dim=1)
    assert torch.all(se_importance[:-1] >= se_importance[1:])


def test_reorder_validation() -> None:
    conv = DynamicConv2d(max_in_channels=4, max_out_channels=6, kernel_sizes=3)
    with pytest.raises(ValueError, match="perm"):
        reorder_channels(torch.tensor([0, 0, 1, 2, 3, 4]), out_of=[conv], in_of=[])
    with pytest.raises(ValueError, match="perm has 4"):
        reorder_channels(torch.arange(4), out_of=[conv], in_of=[])
    with pytest.raises(TypeError, match="in_of"):
        reorder_channels(torch.arange(6), out_of=[], in_of=[nn.ReLU()])
    assert torch.equal(
        l1_importance(torch.tensor([[1.0, -2.0], [3.0, 4.0]]), 0), torch.tensor([3.0, 7.0])
    )
