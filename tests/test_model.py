"""HIU-DMTL network: output shapes, gradients, the mesh branch's geometry, ablations, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiu_data.skeleton import NUM_BONES, NUM_JOINTS
from hiu_data.targets import decode_heatmaps
from hiu_model.config import load_config
from hiu_model.losses import compute_losses
from hiu_model.model import HIUDMTL
from hiu_model.weak_perspective import fit_weak_perspective, weak_perspective_project
from hiu_model.render import project

from .model_batches import synthetic_batch


@pytest.fixture(scope="module")
def tiny_batch() -> dict[str, torch.Tensor]:
    return synthetic_batch(load_config(preset="tiny"), 2, seed=1)


def _expected_shapes(cfg, batch: int, verts: int) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    hm, m = cfg.model.heatmap_size, cfg.model.mask_size
    pofs = {"pofs": (batch, 3 * NUM_BONES, hm, hm)} if "pof" in cfg.model.tasks else {}
    return {"heatmaps": (batch, NUM_JOINTS, hm, hm), "masks": (batch, 1, m, m), **pofs,
            "heatmap_keypoints": (batch, NUM_JOINTS, 2), "mano_pose": (batch, 48), "mano_betas": (batch, 10),
            "camera": (batch, 3), "vertices": (batch, verts, 3), "joints_3d": (batch, NUM_JOINTS, 3),
            "joints_2d": (batch, NUM_JOINTS, 2), "silhouette": (batch, m, m), "root_3d": (batch, 3)}


@pytest.mark.parametrize("preset, batch", [("tiny-bf16", 2), ("tiny-fp32", 2), ("paper", 1)])
def test_output_shapes(preset: str, batch: int) -> None:
    cfg = load_config(preset=preset)
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).eval()
    size = cfg.model.input_size
    K = torch.tensor([[400.0, 0, size / 2], [0, 400.0, size / 2], [0, 0, 1]]).expand(batch, 3, 3)
    with torch.no_grad():
        output = model(torch.randn(batch, 3, size, size), K)
    for name, shape in _expected_shapes(cfg, batch, model.hand_model.num_verts).items():
        value = getattr(output, name)
        for item in value if isinstance(value, list) else [value]:
            assert tuple(item.shape) == shape, name
            assert torch.isfinite(item).all(), name
    assert len(output.heatmaps) == len(output.masks) == cfg.model.num_stacks
    assert len(output.pofs) == (cfg.model.num_stacks if "pof" in cfg.model.tasks else 0)
    assert torch.all((output.silhouette >= 0) & (output.silhouette <= 1))


def test_wrong_input_size_is_reported() -> None:
    model = HIUDMTL(load_config(preset="tiny").model)
    with pytest.raises(ValueError, match="expects 128x128"):
        model(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("overrides", [
    [],
    ["model.use_tam=false", "model.num_stacks=1", "model.pose_representation=axis_angle"],
    ["model.tasks=[heatmap, pof]", "model.num_stacks=3"],
    ["model.tasks=[mask, mesh]", "data.upright=false"],
    ["model.decoder_widths=[32, 48, 64, 96]"],
    ["model.camera_from_keypoints=true"],
    ["model.stem_kernels=[7, 3]", "model.decoder_head_conv=false"],
    ["model.first_block_zeros=true"],
])
def test_gradients_reach_every_parameter(overrides: list[str], tiny_batch: dict[str, torch.Tensor]) -> None:
    cfg = load_config(preset="tiny", overrides=overrides)
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).train()
    output = model(tiny_batch["image"], tiny_batch["camera_K"])
    total, terms = compute_losses(output, tiny_batch, cfg.loss)
    total.backward()
    assert torch.isfinite(total)
    assert ("bone_orientation" in terms) == ("mesh" in cfg.model.tasks)
    starved = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert starved == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("overrides", [
    [],
    ["model.use_tam=false", "model.num_stacks=1"],
    ["model.tasks=[heatmap, pof]", "model.num_stacks=3"],
    ["model.first_block_zeros=true"],
])
def test_last_heatmaps_equal_those_of_the_full_pass(overrides: list[str], tiny_batch: dict[str, torch.Tensor]) -> None:
    cfg = load_config(preset="tiny", overrides=overrides)
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).eval()
    with torch.no_grad():
        full = model(tiny_batch["image"], tiny_batch["camera_K"]).heatmaps[-1]
        alone = model.last_heatmaps(tiny_batch["image"])
    assert full.abs().max() > 0
    torch.testing.assert_close(alone, full, rtol=0, atol=0)


def test_stem_kernels_and_head_conv_shape_the_layers() -> None:
    lean = HIUDMTL(load_config(preset="tiny", overrides=["model.stem_kernels=[5, 3]",
                                                         "model.decoder_head_conv=false"]).model)
    full = HIUDMTL(load_config(preset="tiny-bf16").model)
    convs = [m for m in lean.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3)]
    assert [c.kernel_size for c in full.stem.modules() if isinstance(c, torch.nn.Conv2d)] == [(7, 7), (7, 7)]
    lean_head = lean.blocks[0].decoders["heatmap"].head
    assert [type(m) for m in lean_head] == [torch.nn.Conv2d]
    assert lean_head[0].kernel_size == (1, 1)
    assert len(full.blocks[0].decoders["heatmap"].head) == 2


@pytest.mark.parametrize("zeros", [False, True])
def test_the_first_block_reads_the_stem_alone_unless_told_to_read_zeros(zeros: bool) -> None:
    cfg = load_config(preset="tiny-bf16", overrides=[f"model.first_block_zeros={str(zeros).lower()}"])
    model = HIUDMTL(cfg.model)
    stem, fused = model.stem.out_channels, cfg.model.decoder_channels
    first, second = (block.encoder.stages[0][0] for block in model.blocks)
    assert first.conv1[0].in_channels == (stem + fused if zeros else stem)
    assert second.conv1[0].in_channels == stem + fused
    # Without the zeros the first residual block's input already has its width: no projection.
    assert isinstance(first.shortcut, torch.nn.Identity) != zeros


def test_last_heatmaps_need_the_heatmap_task() -> None:
    cfg = load_config(preset="tiny", overrides=["model.tasks=[mask, mesh]", "data.upright=false"])
    with pytest.raises(ValueError, match="needs the heatmap task"):
        HIUDMTL(cfg.model).last_heatmaps(torch.zeros(1, 3, 128, 128))


def test_ablation_outputs() -> None:
    cfg = load_config(preset="tiny", overrides=["model.tasks=[heatmap, mask]", "model.num_stacks=1"])
    output = HIUDMTL(cfg.model).eval()(torch.zeros(1, 3, 128, 128))
    assert len(output.heatmaps) == len(output.masks) == 1 and output.pofs == []
    assert output.joints_3d is None and output.silhouette is None and output.root_3d is None


def test_mesh_branch_geometry(tiny_batch: dict[str, torch.Tensor]) -> None:
    cfg = load_config(preset="tiny")
    model = HIUDMTL(cfg.model).eval()
    with torch.no_grad():
        output = model(tiny_batch["image"], tiny_batch["camera_K"])
    assert torch.all(output.joints_3d[:, 0] == 0)
    s, t = output.camera[:, :1, None], output.camera[:, None, 1:]
    assert torch.allclose(output.joints_2d, s * output.joints_3d[..., :2] + t)
    # root_3d puts the wrist where the weak-perspective camera sees it, at depth fx / s.
    K = tiny_batch["camera_K"]
    assert torch.allclose(project(output.root_3d[:, None], K)[:, 0], output.camera[:, 1:], atol=1e-3)
    assert torch.allclose(output.root_3d[:, 2], K[:, 0, 0] / output.camera[:, 0])


def test_fitted_camera_recovers_the_projection_and_ignores_zero_weights() -> None:
    generator = torch.Generator().manual_seed(3)
    points = torch.randn(3, 21, 3, generator=generator) * 0.05
    camera = torch.tensor([[400.0, 60.0, 70.0], [250.0, 10.0, 100.0], [520.0, 64.0, 64.0]])
    keypoints = weak_perspective_project(points, camera)
    weights = torch.rand(3, 21, generator=generator)
    fallback = torch.ones(3, 3)
    torch.testing.assert_close(fit_weak_perspective(points, keypoints, weights, fallback), camera)
    # A keypoint moved far away changes nothing while its weight is zero.
    keypoints[:, 5] += 40.0
    weights[:, 5] = 0.0
    torch.testing.assert_close(fit_weak_perspective(points, keypoints, weights, fallback), camera)


def test_fitted_camera_falls_back_where_the_fit_is_degenerate() -> None:
    points = torch.randn(3, 21, 3) * 0.05
    points[1] = 0.0  # no spread: any scale fits
    # Row 2 is a mirror image of its points: the best scale is negative.
    keypoints = weak_perspective_project(points, torch.tensor([[300.0, 50.0, 50.0], [300.0, 50.0, 50.0],
                                                               [-300.0, 50.0, 50.0]]))
    weights = torch.ones(3, 21)
    weights[0] = 0.0
    fallback = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    torch.testing.assert_close(fit_weak_perspective(points, keypoints, weights, fallback), fallback)


def test_mesh_camera_from_keypoints(tiny_batch: dict[str, torch.Tensor]) -> None:
    cfg = load_config(preset="tiny", overrides=["model.camera_from_keypoints=true"])
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).train()
    output = model(tiny_batch["image"], tiny_batch["camera_K"])
    peaks = output.heatmaps[-1].detach().amax(dim=(2, 3)).clamp_min(0)
    # The camera is the weighted fit of the mesh's joints to the heat-map keypoints, and the
    # joints and the silhouette are projected with it.
    expected = fit_weak_perspective(output.joints_3d, output.heatmap_keypoints, peaks, output.camera)
    torch.testing.assert_close(output.camera, expected)
    torch.testing.assert_close(output.joints_2d, weak_perspective_project(output.joints_3d, output.camera))
    fitted_error = ((output.joints_2d - output.heatmap_keypoints) ** 2 * peaks[..., None]).sum()
    model.cfg.camera_from_keypoints = False
    regressed = model(tiny_batch["image"], tiny_batch["camera_K"])
    assert fitted_error < ((regressed.joints_2d - regressed.heatmap_keypoints) ** 2 * peaks[..., None]).sum()
    # The 3D result of the regressor is the same either way.
    torch.testing.assert_close(regressed.joints_3d, output.joints_3d)


def test_silhouette_of_chosen_rows_equals_those_rows_of_the_full_render(tiny_batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = HIUDMTL(load_config(preset="tiny").model).eval()
    rows = torch.tensor([1])
    with torch.no_grad():
        full = model(tiny_batch["image"], tiny_batch["camera_K"])
        subset = model(tiny_batch["image"], tiny_batch["camera_K"], silhouette_rows=rows)
    assert full.silhouette_rows is None and subset.silhouette_rows.tolist() == [1]
    assert subset.silhouette.shape == (1, *full.silhouette.shape[1:]) and full.silhouette[rows].sum() > 0
    torch.testing.assert_close(subset.silhouette, full.silhouette[rows])
    torch.testing.assert_close(subset.joints_2d, full.joints_2d)


def test_silhouette_is_rendered_with_the_weak_perspective_camera() -> None:
    cfg = load_config(preset="tiny")
    model = HIUDMTL(cfg.model)
    hand = model.hand_model(torch.zeros(1, 48), torch.zeros(1, 10))
    vertices = hand.vertices - hand.joints[:, :1]
    camera = torch.tensor([[300.0, 90.0, 60.0]])
    silhouette = model.render_silhouette(vertices, camera)[0]
    pixels = weak_perspective_project(vertices, camera)[0] * cfg.model.mask_size / cfg.model.input_size
    inside = silhouette[pixels[:, 1].long().clamp(0, 31), pixels[:, 0].long().clamp(0, 31)]
    assert (inside > 0.5).float().mean() > 0.85  # boundary vertices may sit in pixels whose centre is outside
    covered = silhouette > 0.5
    rows, cols = torch.nonzero(covered, as_tuple=True)
    assert cols.float().mean() + 0.5 == pytest.approx(pixels[:, 0].mean().item(), abs=1.5)
    assert rows.float().mean() + 0.5 == pytest.approx(pixels[:, 1].mean().item(), abs=1.5)


def test_hand_model_stays_out_of_the_state_dict_and_follows_dtype() -> None:
    model = HIUDMTL(load_config(preset="tiny").model)
    assert not any("hand" in key or "faces" in key for key in model.state_dict())
    again = HIUDMTL(load_config(preset="tiny").model)
    again.load_state_dict(model.state_dict())
    model = model.double().eval()
    assert model.hand_model.layer.v_template.dtype == torch.float64
    with torch.no_grad():
        output = model(torch.zeros(1, 3, 128, 128, dtype=torch.float64))
    assert output.vertices.dtype == torch.float64


def test_mesh_branch_runs_in_float32_under_autocast(tiny_batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = HIUDMTL(load_config(preset="tiny").model).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(tiny_batch["image"], tiny_batch["camera_K"])
    assert output.heatmaps[-1].dtype == torch.bfloat16  # the dense branch is autocast
    for name in ("mano_pose", "camera", "vertices", "joints_2d", "silhouette"):
        value = getattr(output, name)
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
    (output.joints_2d.sum() + output.silhouette.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _heatmap_error(model: HIUDMTL, batch: dict[str, torch.Tensor], cfg) -> float:  # noqa: ANN001
    model.eval()
    with torch.no_grad():
        output = model(batch["image"], batch["camera_K"])
    keypoints, _ = decode_heatmaps(output.heatmaps[-1].numpy())
    scale = cfg.model.input_size / cfg.model.heatmap_size
    return float(np.linalg.norm(keypoints * scale - batch["keypoints_2d"].numpy(), axis=-1).mean())


@pytest.mark.slow
def test_tiny_overfits_16_samples() -> None:
    """The heat-map branch's mean 2D error on 16 training crops falls below 2 crop pixels."""
    cfg = load_config(preset="tiny")
    batch = synthetic_batch(cfg, 16, seed=0)
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    errors = []
    for step in range(1, 301):
        model.train()
        total, _ = compute_losses(model(batch["image"], batch["camera_K"]), batch, cfg.loss)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        if step % 50 == 0:
            errors.append(_heatmap_error(model, batch, cfg))
            if errors[-1] < 2.0:
                break
    assert errors[-1] < 2.0, errors
