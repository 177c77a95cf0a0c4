"""DiffAugment (Zhao et al. 2020, arXiv 2006.10738): policy parsing, each op by hand, gradients, seeding."""

from __future__ import annotations

import pytest
import torch

from lit_gen.nets.augment import (
    AUGMENTATIONS,
    DiffAugment,
    _brightness,
    _contrast,
    _saturation,
    diff_augment,
    parse_policy,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_parse_policy_round_trips_strings_and_lists() -> None:
    assert parse_policy("color,translation,cutout") == AUGMENTATIONS
    assert parse_policy("cutout, color") == ("cutout", "color")
    assert parse_policy(["translation"]) == ("translation",)
    assert parse_policy(",".join(parse_policy("translation,color"))) == ("translation", "color")
    assert parse_policy("") == ()
    assert parse_policy([]) == ()


def test_parse_policy_rejects_unknown_names_and_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'flip'.*'color', 'translation', 'cutout'"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="once"):
        parse_policy("color,color")


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_are_preserved(policy: str, dtype: torch.dtype) -> None:
    x = torch.rand(3, 2, 8, 12, dtype=dtype) * 2 - 1
    out = diff_augment(x, policy, generator=gen())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


def test_empty_policy_is_the_identity_even_on_points() -> None:
    points = torch.randn(5, 2)
    assert diff_augment(points, "") is points
    assert DiffAugment("")(points) is points


def test_rejects_anything_but_a_batch_of_float_images() -> None:
    with pytest.raises(ValueError, match=r"images \(B, C, H, W\).*shape \(5, 2\).*2-D points"):
        diff_augment(torch.randn(5, 2), "color")
    with pytest.raises(ValueError, match="torch.int64"):
        diff_augment(torch.zeros(1, 1, 8, 8, dtype=torch.long), "color")
    with pytest.raises(ValueError, match="low < high"):
        diff_augment(torch.zeros(1, 1, 8, 8), "color", value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="cutout_ratio"):
        diff_augment(torch.zeros(1, 1, 8, 8), "cutout", cutout_ratio=1.5)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
def test_each_op_is_differentiable(policy: str) -> None:
    x = (torch.rand(4, 3, 8, 8) * 2 - 1).requires_grad_()
    (grad,) = torch.autograd.grad(diff_augment(x, policy, generator=gen()).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
def test_gradients_match_finite_differences(policy: str) -> None:
    x = (torch.rand(2, 3, 4, 4, dtype=torch.float64) * 2 - 1).requires_grad_()
    # A fresh generator with the same seed on every call fixes the random parameters, so the op is a function of x.
    assert torch.autograd.gradcheck(lambda t: diff_augment(t, policy, generator=gen(3), cutout_ratio=0.5), (x,))


def test_translation_moves_a_bright_pixel_by_at_most_one_and_keeps_its_value() -> None:
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3, 4] = 1.0
    out = diff_augment(x, "translation", generator=gen(), translation_ratio=0.125)  # 8 * 0.125 = 1 pixel
    shifts = set()
    for img in out[:, 0]:
        (r, c), *others = (img == 1.0).nonzero().tolist()
        assert others == []
        dy, dx = r - 3, c - 4
        shifts.add((dy, dx))
        # The rows and columns shifted in are the middle of [-1, 1]; everything else is background.
        assert (img == 0.0).sum().item() == 8 * abs(dy) + 8 * abs(dx) - abs(dy * dx)
        assert (img == -1.0).sum().item() == 63 - (8 * abs(dy) + 8 * abs(dx) - abs(dy * dx))
    assert shifts == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def test_translation_can_push_a_corner_pixel_out_of_the_frame() -> None:
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 0, 0] = 1.0
    out = diff_augment(x, "translation", generator=gen())
    kept = (out == 1.0).flatten(1).sum(1)
    assert set(kept.tolist()) == {0, 1}
    positions = {tuple(p) for p in (out[:, 0] == 1.0).nonzero()[:, 1:].tolist()}
    assert positions <= {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_cutout_fills_one_clipped_square_with_the_middle_of_the_range() -> None:
    x = torch.ones(256, 1, 8, 8)  # constant at `high`
    out = diff_augment(x, "cutout", generator=gen(), cutout_ratio=0.5)  # hole side 8 * 0.5 = 4
    assert ((out == 0.0) | (out == 1.0)).all()
    areas = set()
    for hole in out[:, 0] == 0.0:
        rows, cols = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
        height, width = len(rows), len(cols)
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
        assert hole.sum().item() == height * width  # a filled rectangle
        # Unclipped it is 4 x 4; the reference draws the centre from [0, 8], so the border clips it to >= 2.
        assert 2 <= height <= 4 and 2 <= width <= 4
        if height < 4:
            assert rows[0] == 0 or rows[-1] == 7
        if width < 4:
            assert cols[0] == 0 or cols[-1] == 7
        areas.add(height * width)
    assert 16 in areas and 4 in areas


def test_cutout_with_an_odd_side() -> None:
    x = torch.ones(128, 2, 6, 6)
    out = diff_augment(x, "cutout", generator=gen(), cutout_ratio=0.5)  # side 3, centre in [0, 6)
    counts = (out[:, 0] == 0.0).flatten(1).sum(1)
    assert set(counts.tolist()) <= {4, 6, 9} and 9 in counts.tolist()
    assert torch.equal(out[:, 0], out[:, 1])  # one hole through all channels


def test_brightness_keeps_per_image_differences() -> None:
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    out = _brightness(x, gen())
    offset = (out - x).flatten(1)
    torch.testing.assert_close(offset, offset[:, :1].expand_as(offset))
    assert (offset.abs() <= 0.5).all()
    torch.testing.assert_close(out - out.mean((1, 2, 3), keepdim=True), x - x.mean((1, 2, 3), keepdim=True))


def test_saturation_keeps_the_channel_mean_and_is_a_no_op_on_one_channel() -> None:
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(_saturation(x, gen()).mean(1), x.mean(1))
    gray = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(_saturation(gray, gen()), gray)


def test_contrast_keeps_the_per_image_mean() -> None:
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    out = _contrast(x, gen())
    torch.testing.assert_close(out.mean((1, 2, 3)), x.mean((1, 2, 3)))
    scale = (out - out.mean((1, 2, 3), keepdim=True)).std((1, 2, 3)) / x.std((1, 2, 3))
    assert ((scale >= 0.5) & (scale <= 1.5)).all()


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
def test_examples_in_a_batch_get_different_parameters(policy: str) -> None:
    x = (torch.rand(1, 3, 8, 8) * 2 - 1).expand(16, -1, -1, -1)
    out = diff_augment(x, policy, generator=gen())
    distinct = {tuple(img.flatten().tolist()) for img in out}
    assert len(distinct) > 4


def test_same_seed_gives_the_same_output_and_another_seed_does_not() -> None:
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    a = diff_augment(x, AUGMENTATIONS, generator=gen(7))
    b = diff_augment(x, AUGMENTATIONS, generator=gen(7))
    c = diff_augment(x, AUGMENTATIONS, generator=gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_value_range_zero_one_fills_with_a_half_and_scales_brightness() -> None:
    x = torch.ones(64, 1, 8, 8)
    for policy in ("translation", "cutout"):
        out = diff_augment(x, policy, value_range=(0.0, 1.0), generator=gen())
        assert set(out.unique().tolist()) == {0.5, 1.0}
    shifted = _brightness(x, gen(), half=0.5)
    assert ((shifted - x).abs() <= 0.25).all() and (shifted - x).abs().max() > 0.2


def test_module_applies_the_policy_and_describes_itself() -> None:
    aug = DiffAugment(["cutout"], value_range=(0.0, 1.0), cutout_ratio=0.25)
    assert aug.policy == ("cutout",) and list(aug.parameters()) == []
    assert (
        repr(aug) == "DiffAugment(policy='cutout', value_range=(0.0, 1.0), translation_ratio=0.125, cutout_ratio=0.25)"
    )
    out = aug(torch.ones(32, 1, 8, 8))
    counts = (out == 0.5).flatten(1).sum(1)
    assert counts.max() == 4 and counts.min() >= 1  # side 8 * 0.25 = 2, clipped to 1 x 1 at the least
