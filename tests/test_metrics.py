"""Each metric against a case with a known answer."""

from __future__ import annotations

import math
from urllib.error import URLError

import pytest
import torch
from torch import nn

from lit_gen.losses.vae import importance_weighted_bound
from lit_gen.metrics import (
    ClassCoverage,
    ImageQuality,
    InceptionFeatures,
    InceptionWeightsError,
    ModeCoverage,
    load_classifier,
    mixture_modes,
    prdc,
    sample_mixture,
)
from lit_gen.metrics.features import INCEPTION_ENV, INCEPTION_FILE


def quality(**kwargs) -> ImageQuality:  # type: ignore[no-untyped-def]
    """ImageQuality on the raw pixels of (B, 1, 1, D) "images": the features are the numbers themselves."""
    return ImageQuality(feature=nn.Flatten(), value_range=(0.0, 1.0), **kwargs)


def test_identical_sets_give_zero_frechet_distance_and_kid() -> None:
    x = torch.randn(2000, 1, 1, 4, generator=torch.Generator().manual_seed(0))
    q = quality(kid_subsets=20)
    q.update(x, x.clone())
    out = q.compute()
    assert out["fd"] == pytest.approx(0.0, abs=1e-6)
    # KID's unbiased estimator on two draws of 1000 from one set of 2000 is -O(overlap/m²): about -0.007 here
    assert abs(out["kid"]) < 0.01
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    shifted = quality(kid_subsets=20)
    shifted.update(x, x + 0.5)
    assert shifted.compute()["kid"] > 0.1


def test_shifted_gaussians_give_the_closed_form_frechet_distance() -> None:
    # N(0, I) vs N(m, 4 I) in 2D: ||m||² + Σ (1 + 4 - 2·√(1·4)) = 25 + 2 = 27
    g = torch.Generator().manual_seed(0)
    real = torch.randn(6000, 1, 1, 2, generator=g)
    fake = torch.tensor([3.0, 4.0]) + 2.0 * torch.randn(6000, 1, 1, 2, generator=g)
    q = quality(kid_subset_size=500)
    for r, f in zip(real.split(1000), fake.split(1000), strict=True):
        q.update(r, f)
    assert q.compute()["fd"] == pytest.approx(27.0, rel=0.03)


def test_precision_recall_density_coverage_by_hand() -> None:
    # real 0, 1, 2, 3 with k=1: every real ball has radius 1. Fakes 0.5 and 10: the fake ball radius is 9.5.
    real, fake = torch.tensor([[0.0], [1.0], [2.0], [3.0]]), torch.tensor([[0.5], [10.0]])
    out = prdc(real, fake, k=1)
    assert out["precision"] == 0.5  # 0.5 lies in real balls, 10 in none
    assert out["density"] == 1.0  # 0.5 lies in two real balls: 2 / (k · 2 fakes)
    assert out["recall"] == 1.0  # every real lies within 9.5 of a fake
    assert out["coverage"] == 0.5  # the balls of 0 and 1 hold a fake, those of 2 and 3 do not
    far = prdc(real, fake + 100, k=1)
    assert far["precision"] == far["coverage"] == far["density"] == 0.0


def test_class_coverage_of_a_collapsed_generator() -> None:
    metric = ClassCoverage(num_classes=10, confidence=0.9)
    logits = torch.full((50, 10), -10.0)
    logits[:, 3] = 10.0  # every sample is a confident "3"
    logits[:10] = 0.0  # ... except ten unsure ones, still labelled 3 (p = e / (e + 9) = 0.23)
    logits[:10, 3] = 1.0
    metric.update(logits, torch.arange(50) % 10)  # the real labels are uniform
    out = metric.compute()
    assert out["classes"] == 1
    assert out["class_kl"] == pytest.approx(math.log(10))  # KL(δ_3 || uniform)
    assert out["confident"] == pytest.approx(0.8)


def test_grid_means_score_all_modes_and_a_collapsed_generator_one() -> None:
    modes, _ = mixture_modes("grid")
    perfect = ModeCoverage("grid")
    perfect.update(modes.repeat(100, 1).float())
    assert {k: float(v) for k, v in perfect.compute().items()} == {"modes": 25, "high_quality": 1.0, "reverse_kl": 0.0}
    collapsed = ModeCoverage("grid")
    collapsed.update(modes[7].repeat(2500, 1).float())
    out = collapsed.compute()
    assert out["modes"] == 1 and out["high_quality"] == 1.0
    assert out["reverse_kl"] == pytest.approx(math.log(25))
    off = ModeCoverage("ring")
    off.update(mixture_modes("ring")[0].float() * (1 + 4 * 0.01))  # 4 std outside every mode
    assert off.compute()["high_quality"] == 0.0 and math.isinf(off.compute()["reverse_kl"])


def test_data_from_the_mixture_is_high_quality() -> None:
    for name, n_modes in (("ring", 8), ("grid", 25)):
        points, labels = sample_mixture(name, 2500, torch.Generator().manual_seed(0))
        metric = ModeCoverage(name)
        metric.update(points)
        out = metric.compute()
        # within 3 std lies 1 - exp(-9/2) = 98.9 % of a 2D Gaussian: the data's own high-quality share
        assert out["modes"] == n_modes and out["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)
        assert out["reverse_kl"] < 0.02
        assert labels.unique().numel() == n_modes


def test_iwae_bound_equals_the_elbo_at_k1_and_tightens_with_k() -> None:
    from tests.helpers import tiny_vae

    vae = tiny_vae()
    x = (torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    # k = 1 is the one-sample ELBO estimate, draw for draw
    mu, logvar = vae.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(2))
    log_px_z = (
        -torch.nn.functional.binary_cross_entropy_with_logits(vae.decoder(z), x, reduction="none").flatten(1).sum(1)
    )
    from lit_gen.losses.vae import gaussian_kl, log_normal

    one_sample_elbo = log_px_z + log_normal(z) - log_normal(z, mu, logvar)
    bound = importance_weighted_bound(log_px_z[None], z[None], mu, logvar)
    torch.testing.assert_close(bound, one_sample_elbo)
    # in expectation: E[bound_1] = ELBO (closed-form KL) <= E[bound_10] <= E[bound_100]
    elbo = (log_px_z.mean() - gaussian_kl(mu, logvar).mean()).item()  # only a reference value
    means = [vae.log_likelihood(x, k, torch.Generator().manual_seed(3)).mean().item() for k in (1, 10, 100, 1000)]
    assert means[0] < means[1] < means[2] < means[3]
    assert means[1] > elbo


@pytest.mark.parametrize("name", ["digits", "mnist_sample"])
def test_shipped_classifiers_reach_their_recorded_accuracy(name: str) -> None:
    from lit_gen.data import DigitsDataModule, MNISTSampleDataModule

    net, meta = load_classifier(name)
    dm = {"digits": DigitsDataModule, "mnist_sample": MNISTSampleDataModule}[name](value_range=(0.0, 1.0), seed=0)
    dm.setup()
    images, labels = (torch.stack([dm.splits["test"][i][j] for i in range(len(dm.splits["test"]))]) for j in (0, 1))
    accuracy = net.accuracy(dm.to_float(images), labels)
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert accuracy > 0.97
    assert sum(p.numel() for p in net.parameters()) < 250_000  # small files


def test_classifier_features_score_real_digits_better_than_noise() -> None:
    from lit_gen.data import DigitsDataModule

    dm = DigitsDataModule(value_range=(-1.0, 1.0))
    dm.setup()
    real = torch.stack([dm.splits["train"][i][0] for i in range(400)])
    held = torch.stack([dm.splits["val"][i][0] for i in range(len(dm.splits["val"]))])
    labels = torch.stack([dm.splits["val"][i][1] for i in range(len(dm.splits["val"]))])
    scores = {}
    for name, fake in (("real", dm.to_float(real[: len(held)])), ("noise", torch.rand(len(held), 1, 8, 8) * 2 - 1)):
        q = ImageQuality(value_range=(-1.0, 1.0), kid_subset_size=100)
        q.update(dm.to_float(held), fake, labels)
        scores[name] = q.compute()
    assert scores["real"]["fd"] * 10 < scores["noise"]["fd"]
    assert scores["real"]["classes"] == 10 and scores["real"]["confident"] > 0.8
    assert scores["real"]["class_kl"] < 0.2 < scores["noise"]["class_kl"]


def test_missing_inception_weights_file_names_the_fix(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(InceptionWeightsError, match=f"nope.pth.*{INCEPTION_ENV}"):
        ImageQuality(feature="inception")


def test_undownloadable_inception_weights_name_the_file_option_and_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch_fidelity")
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    def offline(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise URLError("Name or service not known")

    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", offline)
    with pytest.raises(InceptionWeightsError) as err:
        InceptionFeatures()
    message = str(err.value)
    assert INCEPTION_FILE in message and INCEPTION_ENV in message and "inception_weights" in message
    assert "feature='classifier'" in message


def test_unknown_feature_name() -> None:
    with pytest.raises(ValueError, match="unknown feature 'vgg'"):
        ImageQuality(feature="vgg")  # type: ignore[arg-type]


def test_no_shipped_classifier_for_other_shapes() -> None:
    q = ImageQuality(value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="no shipped classifier for images of shape \\(3, 32, 32\\)"):
        q.update(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))


def test_a_custom_feature_network_runs_in_eval_mode() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5)).train()  # dropout would make identical sets differ
    q = ImageQuality(feature=net, value_range=(0.0, 1.0), kid_subsets=2)
    x = torch.rand(64, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    q.update(x, x.clone())
    q.train()  # what Lightning would do to a module tree; the features stay frozen
    q.update(x, x.clone())
    assert q.compute()["fd"] == pytest.approx(0.0, abs=1e-6)
