"""Soft silhouette, hard coverage and RGB renderer: analytic cases, a dense reference, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hiu_model.mano import HandModel
from hiu_model.render import blur_for_sigma, project, render_rgb, sigma_from_ndc, soft_silhouette
from hiu_model.render_backends import soft_silhouette_dense

EYE = torch.eye(3, dtype=torch.float64)


def _triangle(points_xy: list[tuple[float, float]], z: float = 1.0) -> torch.Tensor:
    """(1, 3, 3) vertices that project with K = I to the given pixel positions."""
    return torch.tensor([[[x * z, y * z, z] for x, y in points_xy]], dtype=torch.float64)


def test_project_pixel_convention():
    K = torch.tensor([[100.0, 0, 32.0], [0, 120.0, 16.0], [0, 0, 1]])
    pts = torch.tensor([[[0.0, 0.0, 2.0], [0.2, -0.1, 2.0]]])
    uv = project(pts, K)
    assert torch.allclose(uv[0, 0], torch.tensor([32.0, 16.0]))
    assert torch.allclose(uv[0, 1], torch.tensor([32.0 + 10.0, 16.0 - 6.0]))


def test_single_triangle_analytic_alpha():
    v = _triangle([(2.5, 2.5), (10.5, 2.5), (2.5, 10.5)])
    f = torch.tensor([[0, 1, 2]])
    a = soft_silhouette(v, f, EYE, (16, 16), sigma=1.0, faces_per_pixel=1)[0]
    # Row 2's pixel centres lie on the top edge: distance 0, alpha exactly 0.5.
    assert torch.equal(a[2, 2:11], torch.full((9,), 0.5, dtype=torch.float64))
    assert a[1, 5].item() == pytest.approx(1 / (1 + math.exp(1.0)))  # 1 px outside: d = +1
    assert a[4, 4].item() == pytest.approx(1 / (1 + math.exp(-4.0)))  # 2 px inside: d = -4
    # Beyond the blur band (ln(1e4 - 1) px^2, about 3 px) nothing is drawn.
    assert a[2, 15].item() == 0.0 and a[15, 15].item() == 0.0


def test_sigma_units_scale_with_resolution():
    assert sigma_from_ndc(1e-4, (128, 256)) == pytest.approx(1e-4 * 64**2)
    assert blur_for_sigma(2.0) == pytest.approx(2.0 * math.log(1e4 - 1))


def _random_triangles(seed: int, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Separate triangles (no shared vertices, so no depth ties) at random depths, (2, 3n, 3)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(2, n, 1, 2, generator=g, dtype=torch.float64) * size
    xy = centres + (torch.rand(2, n, 3, 2, generator=g, dtype=torch.float64) - 0.5) * size * 0.6
    z = 1.0 + torch.rand(2, n, 3, 1, generator=g, dtype=torch.float64)
    verts = torch.cat([xy * z, z], dim=-1).reshape(2, 3 * n, 3)
    return verts, torch.arange(3 * n).reshape(n, 3)


@pytest.mark.parametrize("sigma,k", [(0.7, 2), (2.0, 3), (0.3, 50)])
def test_matches_dense_reference(sigma, k):
    verts, faces = _random_triangles(1, 12, 20)
    x1, x2 = verts.clone().requires_grad_(), verts.clone().requires_grad_()
    fast = soft_silhouette(x1, faces, EYE, (20, 24), sigma=sigma, faces_per_pixel=k, max_pairs=500)
    dense = soft_silhouette_dense(x2, faces, EYE, (20, 24), sigma, blur_for_sigma(sigma), k)
    assert fast.shape == (2, 20, 24)
    assert torch.allclose(fast, dense, atol=1e-12)
    weight = torch.rand_like(fast)
    (fast * weight).sum().backward()
    (dense * weight).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-10)


def test_gradcheck_two_faces():
    v = torch.tensor([[[1.3, 1.2, 1.0], [6.7, 1.9, 1.2], [2.1, 6.6, 1.1], [6.2, 6.4, 0.9]]],
                     dtype=torch.float64, requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    K = torch.tensor([[1.1, 0.0, 0.3], [0.0, 0.9, 0.2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: soft_silhouette(x, faces, K, (9, 8), sigma=1.5, faces_per_pixel=2), (v,))


def test_culling_behind_camera_and_off_screen():
    faces = torch.tensor([[0, 1, 2]])
    behind = torch.tensor([[[1.0, 1.0, 1.0], [6.0, 1.0, -0.5], [1.0, 6.0, 1.0]]], dtype=torch.float64)
    far_away = _triangle([(100.0, 100.0), (120.0, 100.0), (100.0, 120.0)])
    for v in (behind, far_away):
        assert soft_silhouette(v, faces, EYE, (8, 8)).abs().sum().item() == 0.0


def _hand_scene(size: int, batch: int = 2, depth: float = 0.5) -> tuple[HandModel, torch.Tensor, torch.Tensor]:
    hand = HandModel("right", kind="procedural")
    g = torch.Generator().manual_seed(3)
    pose = torch.randn(batch, 48, generator=g) * 0.25
    pose[:, :3] = torch.tensor([1.2, 0.4, 1.0])  # palm roughly towards the camera
    with torch.no_grad():
        out = hand(pose, torch.zeros(batch, 10))
    verts = out.vertices - out.vertices.mean(1, keepdim=True) + torch.tensor([0.0, 0.0, depth])
    focal = 3.2 * depth * size
    K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
    return hand, verts, K


def _cross2(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _point_in_triangle_raster(verts: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, size: int) -> np.ndarray:
    """Independent rasteriser: numpy float64 edge functions of every face at every pixel centre."""
    uv = project(verts.double(), K.double()).numpy()
    tri = uv[:, faces.numpy()]  # (B, F, 3, 2)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros((uv.shape[0], size * size), dtype=bool)
    p = np.stack([xs.ravel(), ys.ravel()], -1)
    for b in range(uv.shape[0]):
        for start in range(0, tri.shape[1], 256):
            t = tri[b, start:start + 256, None]  # (f, 1, 3, 2)
            e = [_cross2(t[:, :, (k + 1) % 3] - t[:, :, k], p[None] - t[:, :, k]) for k in range(3)]
            area = _cross2(t[:, :, 1] - t[:, :, 0], t[:, :, 2] - t[:, :, 0])
            inside = (e[0] * area > 0) & (e[1] * area > 0) & (e[2] * area > 0)
            out[b] |= inside.any(0)
    return out.reshape(-1, size, size)


def test_hard_mode_equals_point_in_triangle_raster():
    hand, verts, K = _hand_scene(64)
    hard = soft_silhouette(verts, hand.faces, K, (64, 64), hard=True).numpy() > 0.5
    ref = _point_in_triangle_raster(verts, hand.faces, K, 64)
    for b in range(len(ref)):
        iou = (hard[b] & ref[b]).sum() / (hard[b] | ref[b]).sum()
        assert ref[b].sum() > 300 and iou > 0.99
    # The sigma -> 0 limit of the soft silhouette is the hard one.
    sharp = soft_silhouette(verts, hand.faces, K, (64, 64), sigma=1e-6, faces_per_pixel=4).numpy() > 0.5
    assert (sharp != hard).mean() < 0.002


def test_translation_moves_centroid_consistently():
    # Far away, so that the hand's depth range is small and every point moves by about f t / z.
    hand, verts, K = _hand_scene(48, batch=1, depth=2.0)
    focal, depth = K[0, 0].item(), verts[..., 2].mean().item()
    shift = torch.zeros(1, 1, 3, requires_grad=True)

    def centroid(s: torch.Tensor, k: int = 8) -> torch.Tensor:
        alpha = soft_silhouette(verts + s, hand.faces, K, (48, 48), sigma=1.0, faces_per_pixel=k)[0]
        ys, xs = torch.meshgrid(torch.arange(48.0) + 0.5, torch.arange(48.0) + 0.5, indexing="ij")
        return torch.stack([(alpha * xs).sum(), (alpha * ys).sum()]) / alpha.sum()

    c0 = centroid(shift)
    # With every candidate face blended (no top-K truncation, whose switching the gradient
    # cannot see) the gradient matches the rigid displacement.
    grad_x = torch.autograd.grad(centroid(shift, k=200)[0], shift)[0][0, 0]
    step = 3.0 * depth / focal  # 3 px
    for axis in (0, 1):
        moved = torch.zeros(1, 1, 3)
        moved[0, 0, axis] = step
        with torch.no_grad():
            delta = centroid(moved) - c0.detach()
        expected = focal * step / depth
        assert delta[axis].item() == pytest.approx(expected, rel=0.1)
        assert abs(delta[1 - axis].item()) < 0.1 * expected
    # The gradient agrees with the finite displacement (px per metre).
    assert grad_x[0].item() == pytest.approx(focal / depth, rel=0.1)
    assert abs(grad_x[1].item()) < 0.1 * focal / depth


def test_chunking_and_batching_do_not_change_the_result():
    hand, verts, K = _hand_scene(32, batch=3)
    whole = soft_silhouette(verts, hand.faces, K, (32, 32), faces_per_pixel=6)
    chunked = soft_silhouette(verts, hand.faces, K, (32, 32), faces_per_pixel=6, max_pairs=4096)
    single = torch.cat([soft_silhouette(verts[i:i + 1], hand.faces, K, (32, 32), faces_per_pixel=6)
                        for i in range(3)])
    assert torch.allclose(whole, chunked, atol=1e-6) and torch.allclose(whole, single, atol=1e-6)


def test_render_rgb_depth_buffer_and_mask():
    near = _triangle([(1.0, 1.0), (9.0, 1.0), (1.0, 9.0)], z=1.0)
    far = _triangle([(3.0, 3.0), (15.0, 3.0), (3.0, 15.0)], z=2.0)
    verts = torch.cat([near, far], dim=1).float()
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colors = torch.tensor([[1.0, 0, 0]] * 3 + [[0, 0, 1.0]] * 3)
    rgb, depth, mask = render_rgb(verts, faces, EYE.float(), (16, 16), colors, ambient=1.0)
    assert depth[0, 4, 4].item() == pytest.approx(1.0) and rgb[0, 4, 4].tolist() == [1.0, 0.0, 0.0]
    assert depth[0, 10, 4].item() == pytest.approx(2.0) and rgb[0, 10, 4].tolist() == [0.0, 0.0, 1.0]
    assert math.isinf(depth[0, 15, 15].item()) and not mask[0, 15, 15]
    hard = soft_silhouette(verts.double(), faces, EYE, (16, 16), hard=True)[0] > 0.5
    assert torch.equal(mask[0], hard)


def test_pytorch3d_backend_agrees():
    pytest.importorskip("pytorch3d.renderer")
    hand, verts, K = _hand_scene(48)
    # Up to 316 faces reach a pixel here; with K above that neither backend truncates (where
    # they do, they keep different faces on purpose: see test_truncation_keeps_the_largest_terms).
    k = 400
    ours = soft_silhouette(verts, hand.faces, K, (48, 48), sigma=0.5, faces_per_pixel=k)
    assert torch.equal(ours, soft_silhouette(verts, hand.faces, K, (48, 48), sigma=0.5, faces_per_pixel=None))
    theirs = soft_silhouette(verts, hand.faces, K, (48, 48), sigma=0.5, faces_per_pixel=k, backend="pytorch3d")
    assert (ours - theirs).abs().mean().item() < 1e-3


def test_pair_tests_match_the_plain_barycentric_and_boundary_distance():
    """The fused hot loop (``pair_tests``) gives what its readable reference functions give."""
    from hiu_model.raster import barycentric, face_table, pair_tests, signed_sq_dist

    rng = np.random.default_rng(3)
    tri = torch.tensor(rng.uniform(0, 32, (500, 3, 2)), dtype=torch.float64)
    points = torch.tensor(rng.uniform(-4, 36, (500, 2)), dtype=torch.float64)
    inside, d2, bary = pair_tests(face_table(tri), points[:, 0], points[:, 1])
    reference_bary = barycentric(points, tri)
    signed = signed_sq_dist(points, tri)
    assert inside.any() and (~inside).any()
    assert torch.equal(inside, (reference_bary > 0).all(dim=-1))
    assert torch.equal(inside, signed < 0)
    assert torch.allclose(d2, signed.abs(), rtol=1e-9, atol=1e-9)
    assert torch.allclose(bary, reference_bary, rtol=1e-9, atol=1e-9)


def _coverage_terms(verts: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, size: int, sigma: float) -> np.ndarray:
    """Independent numpy float64 transcription: (B, pixels, F) coverage probabilities
    sigmoid(-d / sigma) of every face in the blur band, 0 for the others."""
    uv = project(verts.double(), K.double()).numpy()
    tri = uv[:, faces.numpy()]  # (B, F, 3, 2)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    p = np.stack([xs.ravel(), ys.ravel()], -1)[None, :, None]  # (1, P, 1, 2)
    t = tri[:, None]  # (B, 1, F, 3, 2)
    area = _cross2(t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :])
    inside, d2 = np.ones(area.shape[:1] + (p.shape[1],) + area.shape[2:], bool), np.inf
    for k in range(3):
        a, b = t[..., k, :], t[..., (k + 1) % 3, :]
        inside &= _cross2(b - a, p - a) * area > 0
        s = np.clip(((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0.0, 1.0)
        d2 = np.minimum(d2, (((p - a) - s[..., None] * (b - a)) ** 2).sum(-1))
    signed = np.where(inside, -d2, d2)
    band = inside | (d2 < blur_for_sigma(sigma))
    return np.where(band, np.exp(-np.logaddexp(0.0, signed / sigma)), 0.0)


@pytest.mark.parametrize("k", [8, 50])
def test_truncation_keeps_the_largest_terms(k):
    """With more than K faces at a pixel, alpha = 1 - prod(1 - p) over the K largest p.

    That subset is the closest to the untruncated alpha. A hand close to the camera at 24 px,
    sigma 0.5 px^2, has hundreds of faces in the band at most pixels; keeping the K nearest in
    depth instead drops covering faces behind the front faces in the band, and alpha falls by
    up to about 1 (thin fingers vanish).
    """
    size, sigma = 24, 0.5
    hand, verts, K = _hand_scene(size)
    verts = verts.double()
    terms = _coverage_terms(verts, hand.faces, K, size, sigma)
    crowded = (terms > 0).sum(-1) > k
    assert crowded.sum() > 200  # truncation happens at most covered pixels
    largest = -np.sort(-terms, axis=-1)[..., :k]
    expected = 1.0 - np.prod(1.0 - largest, axis=-1)
    everything = 1.0 - np.prod(1.0 - terms, axis=-1)
    alpha = soft_silhouette(verts, hand.faces, K, (size, size), sigma=sigma, faces_per_pixel=k)
    assert np.abs(alpha.reshape(len(expected), -1).numpy() - expected).max() < 1e-9
    untruncated = soft_silhouette(verts, hand.faces, K, (size, size), sigma=sigma, faces_per_pixel=None)
    assert np.abs(untruncated.reshape(len(expected), -1).numpy() - everything).max() < 1e-9
