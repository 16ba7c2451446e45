"""Each SCFM op against a literal, per-element translation of its CUDA kernel (float64, flows far out of range)."""
import math

import pytest
import torch

from posetransfer.models.scfm import ops


def _flow(batch, height, width, seed, spread=4.0):
    """Random flows with ~1/3 of the points pushed far outside the image."""
    gen = torch.Generator().manual_seed(seed)
    flow = torch.randn(batch, 2, height, width, generator=gen, dtype=torch.float64) * spread
    far = torch.rand(batch, 1, height, width, generator=gen, dtype=torch.float64) < 0.33
    return torch.where(far, flow * 10.0, flow)


def _clamp(value, size):
    return max(min(value, size - 1), 0)


def _resample2d_kernel(source, flow, kernel_size, sigma):
    """resample2d_kernel.cu: kernel_resample2d_update_output, one output element per iteration."""
    b_n, c_n, ih, iw = source.shape
    _, _, oh, ow = flow.shape
    out = torch.zeros(b_n, c_n, oh, ow, dtype=source.dtype)
    for b in range(b_n):
        for c in range(c_n):
            for y in range(oh):
                for x in range(ow):
                    xf = x + flow[b, 0, y, x].item()
                    yf = y + flow[b, 1, y, x].item()
                    alpha, beta = xf - math.floor(xf), yf - math.floor(yf)
                    val = total = 0.0
                    for fy in range(kernel_size // 2):
                        y_t = _clamp(int(math.floor(yf) - fy), ih)
                        y_b = _clamp(int(math.floor(yf) + fy + 1), ih)
                        for fx in range(kernel_size // 2):
                            x_l = _clamp(int(math.floor(xf) - fx), iw)
                            x_r = _clamp(int(math.floor(xf) + fx + 1), iw)
                            xl_, xr_ = fx + alpha, (1.0 + fx) - alpha
                            yt_, yb_ = fy + beta, (1.0 + fy) - beta
                            xl_p = math.exp(-xl_ * xl_ / (2 * sigma * sigma))
                            xr_p = math.exp(-xr_ * xr_ / (2 * sigma * sigma))
                            yt_p = math.exp(-yt_ * yt_ / (2 * sigma * sigma))
                            yb_p = math.exp(-yb_ * yb_ / (2 * sigma * sigma))
                            val += yt_p * xl_p * source[b, c, y_t, x_l].item()
                            val += yt_p * xr_p * source[b, c, y_t, x_r].item()
                            val += yb_p * xl_p * source[b, c, y_b, x_l].item()
                            val += yb_p * xr_p * source[b, c, y_b, x_r].item()
                            total += yt_p * xl_p + yt_p * xr_p + yb_p * xl_p + yb_p * xr_p
                    out[b, c, y, x] = val / total
    return out


def _block_extractor_kernel(source, flow, k):
    """block_extractor_kernel.cu: kernel_block_extractor_update_output."""
    b_n, c_n, hs, ws = source.shape
    _, _, hf, wf = flow.shape
    out = torch.zeros(b_n, c_n, hf * k, wf * k, dtype=source.dtype)
    for b in range(b_n):
        for c in range(c_n):
            for y in range(hf * k):
                for x in range(wf * k):
                    yf, xf = y // k, x // k
                    dy = flow[b, 1, yf, xf].item() + (y % k - k // 2) + yf
                    dx = flow[b, 0, yf, xf].item() + (x % k - k // 2) + xf
                    x_l, x_r = _clamp(math.floor(dx), ws), _clamp(math.floor(dx) + 1, ws)
                    y_t, y_b = _clamp(math.floor(dy), hs), _clamp(math.floor(dy) + 1, hs)
                    xl_p, xr_p = 1 - (dx - math.floor(dx)), dx - math.floor(dx)
                    yt_p, yb_p = 1 - (dy - math.floor(dy)), dy - math.floor(dy)
                    out[b, c, y, x] = (xl_p * yt_p * source[b, c, y_t, x_l] + xr_p * yt_p * source[b, c, y_t, x_r]
                                       + xl_p * yb_p * source[b, c, y_b, x_l] + xr_p * yb_p * source[b, c, y_b, x_r])
    return out


def _correlation_kernel(first, second, pad, max_disp, stride2):
    """correlation_cuda_kernel.cu: correlation_forward with kernel_size 1, stride1 1 (the sites' settings)."""
    b_n, c_n, h, w = first.shape
    p1 = torch.nn.functional.pad(first, (pad,) * 4)
    p2 = torch.nn.functional.pad(second, (pad,) * 4)
    rad = max_disp // stride2
    size = 2 * rad + 1
    out_h, out_w = h + 2 * pad - 2 * max_disp, w + 2 * pad - 2 * max_disp
    out = torch.zeros(b_n, size * size, out_h, out_w, dtype=first.dtype)
    for n in range(b_n):
        for oy in range(out_h):
            for ox in range(out_w):
                y1, x1 = oy + max_disp, ox + max_disp
                for tj in range(-rad, rad + 1):
                    for ti in range(-rad, rad + 1):
                        y2, x2 = y1 + tj * stride2, x1 + ti * stride2
                        acc = sum(p1[n, ch, y1, x1].item() * p2[n, ch, y2, x2].item() for ch in range(c_n))
                        out[n, (tj + rad) * size + (ti + rad), oy, ox] = acc / c_n
    return out


@pytest.mark.parametrize("out_size", [(5, 7), (6, 6)])
def test_resample2d_matches_kernel(out_size):
    gen = torch.Generator().manual_seed(1)
    source = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    flow = _flow(2, *out_size, seed=2)
    got = ops.resample2d(source, flow)
    want = _resample2d_kernel(source, flow, 4, 2.0)
    assert got.shape == (2, 3, *out_size)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_resample2d_zero_flow_is_a_smoothing_not_identity():
    # The Gaussian 4x4 kernel blurs even at zero displacement: a bilinear stand-in would be wrong.
    source = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    source[0, 0, 3, 3] = 1.0
    out = ops.resample2d(source, torch.zeros(1, 2, 6, 6, dtype=torch.float64))
    assert 0.0 < out[0, 0, 3, 3] < 1.0 and out[0, 0, 2, 3] > 0.0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_block_extractor_matches_kernel(k):
    gen = torch.Generator().manual_seed(3)
    source = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    flow = _flow(2, 4, 3, seed=4)
    got = ops.block_extractor(source, flow, k)
    want = _block_extractor_kernel(source, flow, k)
    assert got.shape == (2, 3, 4 * k, 3 * k)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_block_extractor_float32_within_1e5():
    gen = torch.Generator().manual_seed(5)
    source = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    flow = _flow(1, 8, 8, seed=6)
    got = ops.block_extractor(source.float(), flow.float(), 3).double()
    assert torch.allclose(got, _block_extractor_kernel(source, flow, 3), atol=1e-5, rtol=0)


def test_local_attn_reshape_matches_kernel_indexing():
    k, h, w = 3, 2, 4
    weights = torch.arange(k * k * h * w, dtype=torch.float64).view(1, k * k, h, w)
    out = ops.local_attn_reshape(weights, k)
    for y in range(k * h):
        for x in range(k * w):
            assert out[0, 0, y, x] == weights[0, (y % k) * k + x % k, y // k, x // k]


@pytest.mark.parametrize("max_disp,channels", [(4, 25), (3, 9), (2, 9)])
def test_correlation_matches_kernel(max_disp, channels):
    gen = torch.Generator().manual_seed(7)
    first = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)
    second = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)
    got = ops.correlation(first, second, max_disp)
    want = _correlation_kernel(first, second, max_disp, max_disp, 2)
    assert got.shape == (2, channels, 6, 7)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_correlation_of_half_inputs_accumulates_in_float32():
    gen = torch.Generator().manual_seed(8)
    first = torch.randn(1, 64, 5, 5, generator=gen).half()
    got = ops.correlation(first, first, 2)
    assert got.dtype == torch.float16
    assert torch.allclose(got.float(), ops.correlation(first.float(), first.float(), 2), atol=1e-3)
