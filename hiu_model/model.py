"""HIU-DMTL: stacked multi-task blocks, the mesh regressor, MANO, projection and silhouette.

Forward of :class:`HIUDMTL` on a batch of crops (B, 3, S, S):

1. stem (two 7x7 stride-2 convs) -> features at h = S / 4;
2. N stacked multi-task blocks (``num_stacks``); block k encodes [stem features, fused features
   of block k-1] (the first block the stem features alone), decodes heat-maps, mask and POF
   (each an intermediate prediction plus a task feature map) and fuses the task features with
   the task attention module;
3. the mesh branch: the last fused features and predictions -> iterative regressor -> MANO
   pose (16 rotations relative to the mean pose), betas and a weak-perspective camera
   (s, tx, ty) -> hand model -> vertices and 21 joints (root-relative, metres, right-hand
   frame) -> ``joints_2d = s * joints_3d[..., :2] + (tx, ty)`` in crop pixels -> the soft
   silhouette at the mask resolution.

Pose: the regressor predicts each of the 16 rotations in the continuous 6D representation
(``pose_representation="6d"``; ``axis_angle`` regresses the 48 values directly) and the model
converts them to MANO's axis-angle, relative to the mean pose. The regressor starts from the
mean hand, fingers up, centred in the crop at the default scale (a learned starting point).

Weak perspective: ``s`` is in crop pixels per metre and ``(tx, ty)`` is the wrist's position
in crop pixels. The silhouette is rendered with exactly this camera: each vertex is placed at
``(u z, v z, z)`` with ``(u, v)`` its weak-perspective projection and ``z`` its depth plus a
constant, and rendered with ``K = diag(m/S, m/S, 1)``; a perspective projection of these points
returns ``(u, v)`` scaled to the mask, while ``z`` keeps the faces' depth order. With
``camera_from_keypoints`` the regressed ``(s, tx, ty)`` is replaced by the weighted least-squares
camera that projects the mesh's joints onto the heat-maps' soft-arg-max (weights: the heat-map
peaks); pose and shape still come from the regressor. When the crop's
intrinsics are given, the wrist's camera-frame position follows from the scale
(``z = fx / s``) and is returned as ``root_3d``.

The hand model (MANO or the procedural hand) is not a registered submodule: its arrays are
constants (and MANO's are licensed), so they stay out of ``state_dict()`` and checkpoints; the
model moves it along in ``.to()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hiu_data.skeleton import JOINT_INDEX, NUM_BONES, NUM_JOINTS
from hiu_data.targets import soft_argmax
from hiu_model.backbone import Encoder, Stem
from hiu_model.config import ModelConfig
from hiu_model.heads import ConcatFusion, MeshRegressor, TaskAttention, TaskDecoder
from hiu_model.mano import HandModel
from hiu_model.render import sigma_from_ndc, soft_silhouette
from hiu_model.rotations import IDENTITY_6D, axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_axis_angle
from hiu_model.weak_perspective import fit_weak_perspective, root_from_weak_perspective, weak_perspective_project

NUM_POSE_JOINTS = 16
NUM_BETAS = 10
DENSE_TASKS = ("heatmap", "mask", "pof")
MIDDLE_MCP = JOINT_INDEX["middle_mcp"]
_DEPTH_OFFSET_M = 1.0  # any constant larger than a hand keeps every vertex in front of the camera
_MAX_LOG_SCALE = 4.0  # keeps exp() of the scale update finite early in training
PYTORCH3D_SIGMA_NDC = 1e-4  # BlendParams' default sigma, NDC units squared


@dataclass
class HIUOutput:
    """Everything one forward pass predicts. Lists hold one entry per stack (last = final);
    disabled tasks give empty lists / ``None``.

    Attributes:
        heatmaps: (B, 21, hm, hm) float heat-maps (peak 1 at a joint), heat-map pixels.
        masks: (B, 1, m, m) mask logits.
        pofs: (B, 3 * 20, hm, hm) part orientation fields, channels [dx, dy, dz] per bone.
        heatmap_keypoints: (B, 21, 2) soft-arg-max of the last heat-maps in crop pixels.
        mano_pose: (B, 48) axis-angle (global + 15 joints) relative to the mean pose, radians.
        mano_betas: (B, 10) shape coefficients.
        camera: (B, 3) weak perspective (s px/m, tx px, ty px) in crop pixels.
        vertices: (B, V, 3) mesh, metres, relative to the wrist, right-hand camera frame.
        joints_3d: (B, 21, 3) HAND21 joints, metres, relative to the wrist (joint 0 is zero).
        joints_2d: (B, 21, 2) the mesh branch's joints projected with ``camera``, crop pixels.
        silhouette: (B, m, m) soft silhouette of the mesh in [0, 1]; (n, m, m) for the rows
            ``silhouette_rows`` when the forward pass was given them.
        silhouette_rows: (n,) int64 batch rows of ``silhouette``; ``None`` = every row.
        root_3d: (B, 3) wrist in the camera frame, metres, when ``camera_K`` was given.
    """

    heatmaps: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    pofs: list[torch.Tensor] = field(default_factory=list)
    heatmap_keypoints: torch.Tensor | None = None
    mano_pose: torch.Tensor | None = None
    mano_betas: torch.Tensor | None = None
    camera: torch.Tensor | None = None
    vertices: torch.Tensor | None = None
    joints_3d: torch.Tensor | None = None
    joints_2d: torch.Tensor | None = None
    silhouette: torch.Tensor | None = None
    silhouette_rows: torch.Tensor | None = None
    root_3d: torch.Tensor | None = None


class MTLBlock(nn.Module):
    """One stacked multi-task block: encoder, the enabled task decoders and their fusion.

    Forward: (B, in_channels, h, h) -> (predictions {task: tensor}, fused (B, C, h, h) or None).
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, with_fusion: bool) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, cfg.encoder_widths, cfg.encoder_blocks, cfg.encoder_block)
        outputs = {"heatmap": (NUM_JOINTS, cfg.heatmap_size), "mask": (1, cfg.mask_size),
                   "pof": (3 * NUM_BONES, cfg.heatmap_size)}
        self.decoders = nn.ModuleDict({
            task: TaskDecoder(cfg.encoder_widths, cfg.decoder_channels, *outputs[task], small_init=task != "mask",
                              level_widths=cfg.decoder_widths or None, head_conv=cfg.decoder_head_conv)
            for task in DENSE_TASKS if task in cfg.tasks})
        self.with_fusion = with_fusion
        self.fusion: nn.Module | None = None
        count = len(self.decoders)
        if with_fusion and count > 1:  # a single task's features pass through unchanged
            self.fusion = (TaskAttention(cfg.decoder_channels, count, cfg.tam_reduction) if cfg.use_tam
                           else ConcatFusion(cfg.decoder_channels, count))

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """(B, in_channels, h, h) -> ({task: prediction}, fused features (B, C, h, h) or None)."""
        encoded = self.encoder(x)
        features, predictions = [], {}
        for task, decoder in self.decoders.items():
            feature, predictions[task] = decoder(encoded)
            features.append(feature)
        if not self.with_fusion:
            return predictions, None
        return predictions, self.fusion(features) if self.fusion is not None else features[0]

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, h) -> this block's heat-maps alone (B, 21, h, h)."""
        return self.decoders["heatmap"](self.encoder(x))[1]


class HIUDMTL(nn.Module):
    """The HIU-DMTL network (see the module docstring). ``cfg``: :class:`ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.with_mesh = "mesh" in cfg.tasks
        self.stem = Stem(cfg.stem_channels, cfg.stem_kernels)
        self.feature_size = cfg.input_size // 4
        in_channels = self.stem.out_channels + cfg.decoder_channels
        first_in = in_channels if cfg.first_block_zeros else self.stem.out_channels
        # The last block's fusion only feeds the regressor: without the mesh branch it is left
        # out, so that every parameter of the model receives a gradient.
        self.blocks = nn.ModuleList(
            MTLBlock(cfg, in_channels if index else first_in, with_fusion=index < cfg.num_stacks - 1 or self.with_mesh)
            for index in range(cfg.num_stacks))
        self.regressor: MeshRegressor | None = None
        object.__setattr__(self, "hand_model", None)
        if self.with_mesh:
            hand = HandModel(side="right", model_dir=cfg.mano_dir, kind=cfg.hand_model)
            for parameter in hand.parameters():
                parameter.requires_grad_(False)
            object.__setattr__(self, "hand_model", hand)
            self.register_buffer("faces", torch.as_tensor(hand.faces, dtype=torch.long), persistent=False)
            theta_init = self._initial_theta(hand)
            channels = {"heatmap": NUM_JOINTS, "mask": 1, "pof": 3 * NUM_BONES}
            map_channels = cfg.decoder_channels + sum(channels[t] for t in DENSE_TASKS if t in cfg.tasks)
            extra = 2 * NUM_JOINTS if self._regressor_reads_keypoints else 0
            self.regressor = MeshRegressor(
                map_channels, self.feature_size, cfg.regressor_channels, cfg.regressor_grid, extra,
                cfg.regressor_hidden, cfg.regressor_layers, cfg.regressor_dropout, cfg.regressor_iterations,
                theta_init)

    def _initial_theta(self, hand: nn.Module) -> torch.Tensor:
        """The regressor's starting point: the mean hand (zero pose offsets, zero betas) turned
        in the image plane so that its fingers point up, at the default scale, centred in the
        crop. (HMR starts from a dataset mean; this is a data-free stand-in that keeps the first
        projections inside the crop; the start is a learned parameter afterwards.)"""
        cfg = self.cfg
        with torch.no_grad():
            joints = hand(torch.zeros(1, 48), torch.zeros(1, NUM_BETAS)).joints[0].float()
        joints = joints - joints[0]
        direction = joints[MIDDLE_MCP]
        turn = -math.pi / 2 - math.atan2(float(direction[1]), float(direction[0]))
        global_orient = torch.tensor([0.0, 0.0, turn])
        rotated = joints @ axis_angle_to_matrix(global_orient).T
        scale = cfg.input_size / cfg.crop_extent_m
        centre = (rotated[:, :2].amax(0) + rotated[:, :2].amin(0)) / 2
        translation = (cfg.input_size / 2 - scale * centre) / cfg.input_size - 0.5
        if cfg.pose_representation == "6d":
            pose = torch.cat([matrix_to_rot6d(axis_angle_to_matrix(global_orient)),
                              torch.tensor(IDENTITY_6D).repeat(NUM_POSE_JOINTS - 1)])
        else:
            pose = torch.cat([global_orient, torch.zeros(3 * (NUM_POSE_JOINTS - 1))])
        return torch.cat([pose, torch.zeros(NUM_BETAS + 1), translation])

    def boundary_parameters(self) -> list[nn.Parameter]:
        """Weights of the layers at the network's ends: the first convolution (reads pixels),
        each task head's prediction layer and the regressor's output layer. Optimisers that
        treat hidden weight matrices specially (Muon) leave these to AdamW."""
        layers: list[nn.Module] = [self.stem.layers[0][0]]
        layers += [decoder.head[-1] for block in self.blocks for decoder in block.decoders.values()]
        if self.regressor is not None:
            layers.append(self.regressor.mlp[-1])
        return [layer.weight for layer in layers]

    @property
    def _regressor_reads_keypoints(self) -> bool:
        return self.cfg.regressor_uses_keypoints and "heatmap" in self.cfg.tasks

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        super()._apply(fn, recurse)
        if self.hand_model is not None:
            self.hand_model._apply(fn)
        return self

    def forward(self, image: torch.Tensor, camera_K: torch.Tensor | None = None,
                silhouette_rows: torch.Tensor | None = None) -> HIUOutput:
        """Run the network.

        Args:
            image: (B, 3, S, S) float32 normalised crops (S = ``cfg.input_size``).
            camera_K: optional (B, 3, 3) crop intrinsics (pixels); only used for ``root_3d``.
            silhouette_rows: optional (n,) int64 rows whose silhouette is rendered (``None``:
                all). The renderer is the costliest part of the mesh branch; training can
                render a subset of each batch (``train.silhouette_samples``).
        Returns:
            :class:`HIUOutput`.
        """
        size = self.cfg.input_size
        stacked, fused = self._run_blocks(image)
        output = HIUOutput()
        for predictions in stacked:
            output.heatmaps += [predictions["heatmap"]] if "heatmap" in predictions else []
            output.masks += [predictions["mask"]] if "mask" in predictions else []
            output.pofs += [predictions["pof"]] if "pof" in predictions else []
        predictions = stacked[-1]
        peaks = None
        if output.heatmaps:
            map_to_crop = size / output.heatmaps[-1].shape[-1]
            output.heatmap_keypoints = soft_argmax(output.heatmaps[-1], beta=self.cfg.soft_argmax_beta) * map_to_crop
            if self.cfg.camera_from_keypoints:
                peaks = output.heatmaps[-1].detach().amax(dim=(2, 3))
        if self.regressor is not None:
            # The regressor's convolutions run under the caller's autocast like the dense
            # branch (in float32 they took about 35 ms of a 245 ms ``tiny`` step at batch 32). Its
            # iterations, the hand model and the renderer want float32 (vertices in metres,
            # sub-pixel projections): never autocast them.
            summary = self.regressor.summarise(self._regressor_input(fused, predictions))
            dtype = self.regressor.theta_init.dtype
            keypoints = output.heatmap_keypoints
            with torch.autocast(fused.device.type, enabled=False):
                self._mesh_branch(summary.to(dtype), output, camera_K,
                                  keypoints.to(dtype) if keypoints is not None else None, silhouette_rows,
                                  peaks.to(dtype) if peaks is not None else None)
        return output

    def last_heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """The last stack's heat-maps (B, 21, h, h) of (B, 3, S, S) crops, equal to
        ``forward(image).heatmaps[-1]`` at a fraction of its cost: the last block runs its
        encoder and heat-map decoder only, and the mesh branch not at all (what the upright
        search's passes need: about a third less time than a full pass of ``tiny``)."""
        if "heatmap" not in self.cfg.tasks:
            raise ValueError("last_heatmaps needs the heatmap task")
        stacked, _ = self._run_blocks(image, last_heatmaps_only=True)
        return stacked[-1]["heatmap"]

    def _run_blocks(self, image: torch.Tensor, last_heatmaps_only: bool = False
                    ) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """The stem and the stacked blocks on (B, 3, S, S) crops: each block's predictions and the
        last fused features (B, C, h, h). Each block reads the stem's features and the previous
        block's fused ones (the first the stem's alone, or next to zeros: ``first_block_zeros``).
        ``last_heatmaps_only``: the last block predicts its heat-maps alone, and the fused
        features returned are its input's."""
        size = self.cfg.input_size
        if image.shape[-2:] != (size, size):
            raise ValueError(f"HIUDMTL expects {size}x{size} crops, got {tuple(image.shape[-2:])}")
        stem = self.stem(image)
        fused = stem.new_zeros(stem.shape[0], self.cfg.decoder_channels, *stem.shape[-2:])
        stacked = []
        for index, block in enumerate(self.blocks):
            features = stem if index == 0 and not self.cfg.first_block_zeros else torch.cat([stem, fused], dim=1)
            if last_heatmaps_only and index == len(self.blocks) - 1:
                stacked.append({"heatmap": block.heatmaps(features)})
                break
            predictions, block_fused = block(features)
            stacked.append(predictions)
            if block_fused is not None:
                fused = block_fused
        return stacked, fused

    @staticmethod
    def _regressor_input(fused: torch.Tensor, predictions: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused features and the last predictions (mask as a probability) at the fused
        features' resolution, concatenated: (B, C + 21 + 1 + 60, h, h)."""
        maps = [fused]
        for task in DENSE_TASKS:
            if task in predictions:
                prediction = torch.sigmoid(predictions[task]) if task == "mask" else predictions[task]
                if prediction.shape[-1] != fused.shape[-1]:
                    prediction = F.interpolate(prediction, size=fused.shape[-2:], mode="bilinear", align_corners=False)
                maps.append(prediction.to(fused.dtype))
        return torch.cat(maps, dim=1)

    def _mesh_branch(self, summary: torch.Tensor, output: HIUOutput, camera_K: torch.Tensor | None,
                     heatmap_keypoints: torch.Tensor | None,
                     silhouette_rows: torch.Tensor | None = None,
                     heatmap_peaks: torch.Tensor | None = None) -> None:
        assert self.regressor is not None and self.hand_model is not None
        size, batch = self.cfg.input_size, summary.shape[0]
        extra = None
        if self._regressor_reads_keypoints and heatmap_keypoints is not None:
            extra = (heatmap_keypoints / size * 2.0 - 1.0).flatten(1)
        theta = self.regressor(summary, extra)[-1]
        pose_width = 6 * NUM_POSE_JOINTS if self.cfg.pose_representation == "6d" else 3 * NUM_POSE_JOINTS
        pose_params, betas, camera_raw = theta.split([pose_width, NUM_BETAS, 3], dim=1)
        if self.cfg.pose_representation == "6d":
            pose = rot6d_to_axis_angle(pose_params.reshape(batch, NUM_POSE_JOINTS, 6)).reshape(batch, -1)
        else:
            pose = pose_params
        scale = (size / self.cfg.crop_extent_m) * torch.exp(camera_raw[:, :1].clamp(-_MAX_LOG_SCALE, _MAX_LOG_SCALE))
        camera = torch.cat([scale, size * (0.5 + camera_raw[:, 1:])], dim=1)
        hand = self.hand_model(pose, betas, None)
        root = hand.joints[:, :1]
        output.joints_3d = hand.joints - root
        if self.cfg.camera_from_keypoints and heatmap_keypoints is not None and heatmap_peaks is not None:
            camera = fit_weak_perspective(output.joints_3d, heatmap_keypoints.detach(), heatmap_peaks.clamp_min(0),
                                          fallback=camera)
        output.mano_pose, output.mano_betas = pose, betas
        output.vertices = hand.vertices - root
        self.place_mesh(output, camera, camera_K, silhouette_rows)

    def place_mesh(self, output: HIUOutput, camera: torch.Tensor, camera_K: torch.Tensor | None = None,
                   silhouette_rows: torch.Tensor | None = None) -> None:
        """Set ``output.camera`` (B, 3) and what it places: ``joints_2d``, the silhouette of
        ``silhouette_rows`` (``None``: every row) and, with ``camera_K``, ``root_3d``. Needs
        ``output.joints_3d`` and ``output.vertices``."""
        output.camera = camera
        output.joints_2d = weak_perspective_project(output.joints_3d, camera)
        if silhouette_rows is None:
            output.silhouette = self.render_silhouette(output.vertices, camera)
        else:
            output.silhouette_rows = silhouette_rows.to(device=camera.device, dtype=torch.long)
            output.silhouette = self.render_silhouette(output.vertices[output.silhouette_rows],
                                                       camera[output.silhouette_rows])
        if camera_K is not None:
            output.root_3d = root_from_weak_perspective(camera, camera_K)

    def render_silhouette(self, vertices: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """Soft silhouette (B, m, m) of root-relative vertices (B, V, 3) under ``camera`` (B, 3)."""
        size, mask_size = self.cfg.input_size, self.cfg.mask_size
        uv = weak_perspective_project(vertices, camera)
        depth = vertices[..., 2:] + _DEPTH_OFFSET_M
        points = torch.cat([uv * depth, depth], dim=-1)
        intrinsics = torch.diag(vertices.new_tensor([mask_size / size, mask_size / size, 1.0]))
        intrinsics = intrinsics.expand(vertices.shape[0], 3, 3)
        sigma = self.cfg.silhouette_sigma
        if sigma is None:
            sigma = sigma_from_ndc(PYTORCH3D_SIGMA_NDC, (mask_size, mask_size))
        return soft_silhouette(points, self.faces, intrinsics, (mask_size, mask_size), sigma=sigma,
                               faces_per_pixel=self.cfg.silhouette_faces_per_pixel)
