"""The in-project feature network, perceptual distance and domain FID."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supernet.anycost.metrics import (
    FeatureNet,
    domain_fid,
    frechet_distance,
    load_feature_net,
    perceptual_distance,
    save_feature_net,
    to_gan_range,
    train_feature_net,
)
from supernet.data import DatasetConfig, load_dataset, resize
from supernet.errors import CheckpointError


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetConfig(kind="mnist", limit=600))


@pytest.fixture(scope="module")
def trained(digits):
    return train_feature_net(digits, epochs=6, batch_size=64, progress=False, seed=0)


def test_to_gan_range_pads_mnist_with_background():
    images = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    x = to_gan_range(images, 32)
    assert x.shape == (2, 1, 32, 32)
    assert x[:, :, 2:30, 2:30].eq(1.0).all() and x[:, :, :2].eq(-1.0).all()
    with pytest.raises(TypeError, match="uint8"):
        to_gan_range(images.float())


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 1))
    b = rng.normal(2.0, 3.0, size=(20000, 1))
    # 1-d Gaussians: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 = 4 + 4
    assert frechet_distance(a, b) == pytest.approx(8.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # fewer samples than dimensions: a singular covariance is regularised, not an error
    few = rng.normal(size=(5, 16))
    assert np.isfinite(frechet_distance(few, few + 1.0))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((4, 2), np.nan), a[:4].repeat(2, axis=1))
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance(rng.normal(size=(4, 2)), rng.normal(size=(4, 3)))


def test_feature_net_learns_the_digits(trained):
    net, info = trained
    assert info["val_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert not any(p.requires_grad for p in net.parameters())
    few = load_dataset(DatasetConfig(kind="mnist", limit=64))
    once, _ = train_feature_net(few, epochs=1, batch_size=16, progress=False, seed=3)
    again, _ = train_feature_net(few, epochs=1, batch_size=16, progress=False, seed=3)
    for key, value in once.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_perceptual_distance(trained, digits):
    net, _ = trained
    real = to_gan_range(digits.val.images[:8])
    other = to_gan_range(digits.val.images[8:16])
    same = perceptual_distance(net, real, real)
    assert torch.allclose(same, torch.zeros(8), atol=1e-6)
    ab, ba = perceptual_distance(net, real, other), perceptual_distance(net, other, real)
    assert torch.allclose(ab, ba, atol=1e-5) and (ab > 0).all()
    # a slightly noisy copy is closer than a different digit
    noisy = (real + 0.05 * torch.randn_like(real)).clamp(-1, 1)
    assert (perceptual_distance(net, real, noisy) < ab).float().mean() >= 0.75
    # gradients reach the images, never the frozen net
    fake = other.clone().requires_grad_(True)
    perceptual_distance(net, real, fake).sum().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="equal shapes"):
        perceptual_distance(net, real, other[:4])


def test_domain_fid_separates_digits_from_noise(trained, digits):
    net, _ = trained
    real_a = digits.train.images[:300]
    real_b = digits.val.images[:300]
    noise = torch.rand(300, 1, 32, 32) * 2 - 1
    close = domain_fid(net, real_a, real_b)
    far = domain_fid(net, noise, real_b)
    assert 0 <= close < far / 5
    # blur is seen: digits brought down to 8 px and back are far from sharp ones
    blurred = resize(resize(to_gan_range(real_a), 8), 32)
    assert domain_fid(net, blurred, real_b) > 3 * close


def test_feature_net_round_trip_and_corrupt_files(trained, tmp_path):
    net, info = trained
    path = tmp_path / "features.pt"
    save_feature_net(net, path, {"val_accuracy": info["val_accuracy"]})
    loaded, meta = load_feature_net(path)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert meta["val_accuracy"] == info["val_accuracy"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        load_feature_net(bad)
    with pytest.raises(CheckpointError):
        load_feature_net(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="expects"):
        FeatureNet()(torch.zeros(2, 3, 32, 32))
