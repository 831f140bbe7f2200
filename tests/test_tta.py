"""Rotation test-time augmentation: the maths, the averaging, and the wrapped network."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiu_data.targets import encode_heatmaps, soft_argmax
from hiu_model.config import load_config
from hiu_model.model import HIUDMTL, HIUOutput
from hiu_model.weak_perspective import fit_weak_perspective, weak_perspective_project
from hiu_model.tta import RotationTTA, coverage, rotate_maps, with_rotation_tta


def _dot(size: int, x: int, y: int) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[0, 0, y, x] = 1.0
    return image


def _peak(maps: torch.Tensor) -> tuple[int, int]:
    index = int(maps[0, 0].argmax())
    return index % maps.shape[-1], index // maps.shape[-1]


def test_positive_angles_turn_clockwise_on_screen() -> None:
    # A pixel right of the centre of a 9x9 map (centre pixel 4, 4) goes below it at +90 deg
    # and above it at -90 deg (image y points down).
    assert _peak(rotate_maps(_dot(9, 7, 4), 90.0)) == (4, 7)
    assert _peak(rotate_maps(_dot(9, 7, 4), -90.0)) == (4, 1)


def test_rotating_there_and_back_is_the_identity_inside_the_covered_disc() -> None:
    # Smooth maps (Gaussians of sigma 5 px), on which bilinear resampling is near exact.
    centres = np.array([[10.0, 12.0], [20.0, 15.0], [15.5, 22.0]])
    maps = torch.from_numpy(encode_heatmaps(centres, np.ones(3, bool), (32, 32), sigma=5.0)[0])[None]
    back = rotate_maps(rotate_maps(maps, 30.0), -30.0)
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5 - 16, torch.arange(32) + 0.5 - 16, indexing="ij")
    inner = (xs**2 + ys**2).sqrt() < 12
    assert (back - maps)[..., inner].abs().max() < 0.02
    weight = coverage(maps.shape, 30.0, maps)[0, 0]
    assert torch.allclose(weight[inner], torch.ones(()), atol=1e-5)
    assert weight[0, 0] < 0.01 and weight.min() >= 0 and weight.max() <= 1 + 1e-6


class _EquivariantNet(nn.Module):
    """Heat-maps are the image's first channel pooled to a quarter (so they turn with the image);
    the mask logit is the same map scaled. Stands in for a perfectly rotation-equivariant network."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)
        self.cfg = SimpleNamespace(soft_argmax_beta=20.0)
        self.calls = 0

    def forward(self, image: torch.Tensor, camera_K=None, silhouette_rows=None) -> HIUOutput:
        self.calls += 1
        pooled = F.avg_pool2d(image[:, :1], 4) * self.scale  # peak about 1, as a heat-map
        heatmaps = pooled.expand(-1, 2, -1, -1).contiguous()
        return HIUOutput(heatmaps=[heatmaps], masks=[8 * pooled - 4],
                         heatmap_keypoints=soft_argmax(heatmaps, beta=20.0) * 4)


def _blob_image(x: float, y: float) -> torch.Tensor:
    """(1, 3, 64, 64) image with a Gaussian blob (sigma 8 px) at crop pixel (x, y)."""
    blob = torch.from_numpy(encode_heatmaps(np.array([[x, y]]), np.array([True]), (64, 64), sigma=8.0)[0][0])
    return blob.expand(1, 3, 64, 64).contiguous()


def test_averaged_maps_of_an_equivariant_network_stay_where_the_plain_pass_puts_them() -> None:
    net = _EquivariantNet()
    image = _blob_image(40.0, 25.0)
    plain = net(image)
    tta = RotationTTA(net, (-30.0, 30.0))(image)
    assert net.calls == 1 + 3  # the plain call above, then the wrapper's plain and two turned passes
    assert torch.allclose(tta.heatmap_keypoints, plain.heatmap_keypoints, atol=0.3)
    assert torch.allclose(tta.heatmaps[-1], plain.heatmaps[-1], atol=0.05)
    probability = torch.sigmoid(tta.masks[-1])
    assert torch.allclose(probability, torch.sigmoid(plain.masks[-1]), atol=0.06)  # the steep logit scales the resampling blur


def test_a_network_that_ignores_the_rotation_is_averaged_over_the_turned_positions() -> None:
    # A blind network answers the same map for every input: turned back, its copies land on an
    # arc about the crop centre, so the average is lower and its keypoint nearer the centre.
    class Blind(_EquivariantNet):
        def forward(self, image, camera_K=None, silhouette_rows=None):
            return super().forward(_blob_image(56.0, 32.0).expand(image.shape[0], -1, -1, -1))

    net = Blind()
    image = torch.zeros(1, 3, 64, 64)
    plain, tta = net(image), RotationTTA(net, (-40.0, 40.0))(image)
    assert float(tta.heatmaps[-1].amax()) < 0.8 * float(plain.heatmaps[-1].amax())
    x_plain, y_plain = plain.heatmap_keypoints[0, 0].tolist()
    x_tta, y_tta = tta.heatmap_keypoints[0, 0].tolist()
    assert x_tta < x_plain - 1.0 and y_tta == pytest.approx(y_plain, abs=0.2)


@pytest.mark.parametrize("camera_from_keypoints", [True, False])
def test_wrapped_network_keeps_the_plain_pass_for_the_mesh(camera_from_keypoints: bool) -> None:
    cfg = load_config(None, "tiny", ["model.input_size=64", "model.num_stacks=1",
                                     f"model.camera_from_keypoints={str(camera_from_keypoints).lower()}"])
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).eval()
    with torch.no_grad():  # heat-maps with positive peaks that depend on the image (not the near-zero init)
        head = model.blocks[-1].decoders["heatmap"].head[-1]
        head.weight.normal_(std=0.5)
        head.bias.fill_(0.2)
    image = torch.randn(2, 3, 64, 64)
    K = torch.tensor([[200.0, 0, 32], [0, 200.0, 32], [0, 0, 1]]).expand(2, 3, 3)
    with torch.no_grad():
        plain = model(image, K)
        same = with_rotation_tta(model, 0.0)(image, K)
        tta = with_rotation_tta(model, 20.0)(image, K)
    assert torch.equal(same.heatmaps[-1], plain.heatmaps[-1])
    assert tta.heatmaps[-1].shape == plain.heatmaps[-1].shape and tta.masks[-1].shape == plain.masks[-1].shape
    assert not torch.allclose(tta.heatmaps[-1], plain.heatmaps[-1])
    assert torch.isfinite(tta.masks[-1]).all() and torch.isfinite(tta.heatmap_keypoints).all()
    for name in ("joints_3d", "vertices", "mano_pose", "mano_betas"):
        assert torch.equal(getattr(tta, name), getattr(plain, name)), name
    if camera_from_keypoints:
        # The camera is solved again from the averaged keypoints; what it places follows.
        peaks = tta.heatmaps[-1].amax(dim=(2, 3)).clamp_min(0)
        expected = fit_weak_perspective(plain.joints_3d, tta.heatmap_keypoints, peaks, fallback=plain.camera)
        assert torch.allclose(tta.camera, expected) and not torch.allclose(tta.camera, plain.camera)
        assert torch.allclose(tta.joints_2d, weak_perspective_project(plain.joints_3d, tta.camera))
        assert torch.allclose(tta.silhouette, model.render_silhouette(plain.vertices, tta.camera))
        assert not torch.allclose(tta.root_3d, plain.root_3d)
    else:
        for name in ("camera", "joints_2d", "silhouette", "root_3d"):
            assert torch.equal(getattr(tta, name), getattr(plain, name)), name
    wrapper = with_rotation_tta(model, 20.0)
    assert wrapper.hand_model is model.hand_model and wrapper.cfg is model.cfg


def test_negative_rotation_is_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        with_rotation_tta(nn.Identity(), -5.0)
