"""Metrics against their references: scikit-image's SSIM/PSNR, scipy's sqrtm, OpenCV's resizes; identical sets
score perfectly with any (random) network; the networks load from files in the original layouts."""
import numpy as np
import pytest
import torch

from posetransfer.metrics import fid, lpips, resize, ssim
from posetransfer.metrics.protocols import PROTOCOLS

from .networks import alexnet_weights, inception_weights, lpips_linear_weights

pytestmark = pytest.mark.metrics


def _images(count, height=64, width=44, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((height, width, 3)).astype(np.float32) for _ in range(count)]


# ------------------------------------------------------------------------------------------- SSIM / PSNR
@pytest.mark.parametrize("seed", [0, 1])
def test_paper_ssim_matches_scikit_image(seed):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(seed)
    truth = rng.random((96, 64, 3)).astype(np.float32)
    result = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
    # the originals' call, word for word in its arguments (metrics.py, ssim_256)
    expected = skimage_metrics.structural_similarity(
        truth * 255.0, result * 255.0, gaussian_weights=True, sigma=1.2, use_sample_covariance=False,
        channel_axis=2, data_range=(result * 255.0).max() - (result * 255.0).min())
    assert ssim.paper_ssim(result, truth) == pytest.approx(expected, abs=1e-5)
    expected51 = skimage_metrics.structural_similarity(truth, result, data_range=1, win_size=51, channel_axis=2)
    assert ssim.window51_ssim(result, truth) == pytest.approx(expected51, abs=1e-5)
    assert ssim.psnr(result, truth) == pytest.approx(
        skimage_metrics.peak_signal_noise_ratio(truth, result, data_range=1), abs=1e-4)


def test_ssim_of_identical_images_is_one_and_falls_for_different_ones():
    a, b = _images(2, height=64, width=64)
    assert ssim.paper_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim.window51_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim.paper_ssim(a, b) < 0.2
    assert ssim.psnr(a, a) == float("inf")
    assert np.isnan(ssim.window51_ssim(*_images(2)))  # 64 x 44: smaller than the 51 window


def test_gaussian_window_is_scipys_nine_taps_for_sigma_1_2():
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros(31)
    impulse[15] = 1
    reference = ndimage.gaussian_filter1d(impulse, 1.2, truncate=3.5)
    window = ssim.gaussian_window(1.2).numpy()
    assert window.shape == (9,)
    np.testing.assert_allclose(reference[11:20], window, atol=1e-12)


# ------------------------------------------------------------------------------------------- resizes
@pytest.mark.parametrize("protocol, size", [("pcdms-256", (176, 256)), ("pcdms-512", (352, 512)), ("scfm", (176, 256))])
def test_protocol_resizes_give_the_originals_sizes_and_opencv_values(protocol, size):
    p = PROTOCOLS[protocol]
    assert p.lpips_size == size
    assert p.ssim_size == (None if protocol == "scfm" else size)
    square = (np.random.default_rng(0).random((size[1], size[1], 3)) * 255).astype(np.float32)  # a model square
    out = resize.resize(square, p.lpips_size, p.lpips_interpolation)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.float32
    cv2 = pytest.importorskip("cv2")
    flag = cv2.INTER_CUBIC if p.lpips_interpolation == "cubic" else cv2.INTER_LINEAR
    np.testing.assert_allclose(out, cv2.resize(square, size, interpolation=flag), atol=2e-4)


def test_cubic_resize_keeps_overshoot_like_opencv_on_float():
    image = np.zeros((8, 8, 3), np.float32)
    image[:, 4:] = 255.0
    out = resize.resize(image, (16, 8), "cubic")
    assert out.max() > 255.0 and out.min() < 0.0  # not clipped, as cv2 on float32


def test_ground_truth_names_follow_the_originals():
    assert PROTOCOLS["pcdms-256"].ground_truth_name("a/fashionA_to_fashionB.png") == "fashionB.png"
    assert PROTOCOLS["scfm"].ground_truth_name("fashionA_2_fashionB_vis.png") == "fashionB.png"
    assert PROTOCOLS["plain"].ground_truth_name("x/y.jpg") == "y.jpg"
    assert PROTOCOLS["pcdms-256"].used(8570, 64) == 8512 and PROTOCOLS["plain"].used(8570, 64) == 8570
    assert PROTOCOLS["scfm"].used(10, 64) == 10  # fewer than a batch: the originals shrank the batch


# ------------------------------------------------------------------------------------------- FID
def _random_covariance(rng, dim, samples):
    x = rng.normal(size=(samples, dim))
    return np.cov(x @ rng.normal(size=(dim, dim)), rowvar=False)


def test_matrix_square_root_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    s1, s2 = _random_covariance(rng, 12, 40), _random_covariance(rng, 12, 40)
    ours = fid.sqrtm_product(s1, s2)
    reference = linalg.sqrtm(s1 @ s2).real
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours @ ours, s1 @ s2, rtol=1e-6, atol=1e-8)


def test_frechet_distance_matches_the_originals_formula_also_when_rank_deficient():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    for samples in (60, 8):  # 8 samples of 16 features: singular covariances, as with few test images
        a, b = rng.normal(size=(samples, 16)), rng.normal(1.0, 2.0, size=(samples, 16))
        (mu1, s1), (mu2, s2) = fid.statistics(a), fid.statistics(b)
        covmean = linalg.sqrtm(s1 @ s2).real
        expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-5)


def test_fid_inception_from_file_identical_sets_score_zero(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "inception.safetensors"
    save_file(inception_weights(divisor=16), str(path))
    model = fid.load_fid_inception(str(path))
    images = _images(5, seed=3)
    features = fid.activations(model, images, batch_size=2)
    assert features.shape == (5, 2048 // 16) and np.isfinite(features).all()
    mu, sigma = fid.statistics(features)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    other = fid.statistics(fid.activations(model, _images(5, seed=4), batch_size=5))
    assert fid.frechet_distance(mu, sigma, *other) > 1e-3
    assert np.allclose(features, fid.activations(model, images, batch_size=5), atol=1e-5)  # batching-independent
    mixed = fid.activations(model, [images[0], _images(1, height=50, width=30)[0], images[1]], batch_size=3)
    assert np.allclose(mixed[[0, 2]], features[:2], atol=1e-5)  # several sizes: each batch holds one size
    weights = inception_weights(divisor=16)
    weights.pop("Mixed_5b.branch1x1.bn.running_mean")
    save_file(weights, str(path))
    with pytest.raises(ValueError, match="Mixed_5b.branch1x1.bn.running_mean"):
        fid.load_fid_inception(str(path))


def test_fid_inception_full_size_architecture_gives_2048_features(tmp_path):
    path = tmp_path / "pt_inception.pth"
    torch.save(inception_weights(divisor=1), path)
    model = fid.load_fid_inception(str(path))
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 44)).shape == (1, 2048)


def test_fid_statistics_round_trip_through_npz(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    fid.save_statistics(str(tmp_path / "s.npz"), mu, sigma)
    loaded = fid.load_statistics(str(tmp_path / "s.npz"))
    assert np.array_equal(loaded[0], mu) and np.array_equal(loaded[1], sigma)


# ------------------------------------------------------------------------------------------- LPIPS
def _lpips_files(tmp_path):
    backbone, linear = tmp_path / "alexnet.pth", tmp_path / "alex.pth"
    torch.save(alexnet_weights(), backbone)
    torch.save(lpips_linear_weights(), linear)
    return str(backbone), str(linear)


def test_lpips_is_zero_for_identical_images_and_positive_otherwise(tmp_path):
    model = lpips.load_lpips(*_lpips_files(tmp_path))
    a, b = (torch.from_numpy(np.stack(x)).movedim(-1, 1) * 2 - 1 for x in (_images(2, seed=5), _images(2, seed=6)))
    with torch.no_grad():
        assert model(a, a).abs().max() < 1e-6
        distance = model(a, b)
    assert distance.shape == (2,) and (distance > 1e-4).all()


def test_lpips_matches_a_direct_computation(tmp_path):
    backbone, linear = _lpips_files(tmp_path)
    model = lpips.load_lpips(backbone, linear)
    feats, lins = alexnet_weights(), lpips_linear_weights()
    a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    shift, scale = torch.tensor(lpips.SHIFT).view(1, 3, 1, 1), torch.tensor(lpips.SCALE).view(1, 3, 1, 1)

    def layers(x):
        x, out = (x - shift) / scale, []
        for k, (index, _, _, _) in enumerate([(0, 0, 0, 0), (3, 0, 0, 0), (6, 0, 0, 0), (8, 0, 0, 0), (10, 0, 0, 0)]):
            if k in (1, 2):
                x = torch.nn.functional.max_pool2d(x, 3, 2)
            stride, padding = lpips.ALEX_CONVS[index]
            x = torch.relu(torch.nn.functional.conv2d(x, feats[f"features.{index}.weight"], feats[f"features.{index}.bias"],
                                                      stride=stride, padding=padding))
            out.append(x)
        return out

    expected = 0.0
    for k, (fa, fb) in enumerate(zip(layers(a), layers(b))):
        fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        expected += ((fa - fb) ** 2 * lins[f"lin{k}.model.1.weight"]).sum(1).mean()
    with torch.no_grad():
        assert float(model(a, b)[0]) == pytest.approx(float(expected), rel=1e-5)


def test_lpips_reads_one_combined_state_dict_and_names_missing_parts(tmp_path):
    feats, lins = alexnet_weights(), lpips_linear_weights()
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    combined = {f"net.slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v
                for k, v in feats.items() if k.startswith("features.")}
    combined.update(lins)
    torch.save(combined, tmp_path / "lpips_alex.pth")
    separate = lpips.load_lpips(*_lpips_files(tmp_path))
    joined = lpips.load_lpips(str(tmp_path / "lpips_alex.pth"))
    a, b = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(separate(a, b), joined(a, b))
    torch.save(feats, tmp_path / "only_backbone.pth")
    with pytest.raises(ValueError, match="lin0"):
        lpips.load_lpips(str(tmp_path / "only_backbone.pth"))
