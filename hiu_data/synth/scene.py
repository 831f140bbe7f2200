"""Synthetic hand scenes: sample, pose, place, render, composite and label.

One scene is one image with one or two hands. Everything random about scene ``index`` comes
from its own generator ``numpy.random.default_rng([seed, stream, index])`` (``stream`` names
the output kind, see :func:`stream_of`), and scenes are
rendered in fixed chunks of :data:`CHUNK` consecutive indices, so a scene's image and labels
do not depend on how many worker processes made them or in which order.

Pipeline of a chunk (:func:`render_chunk`):

1. per scene, sample the camera, the hands (side, articulation from :mod:`.poses`, shape,
   global rotation, where and how large in the image), skin tones and lights;
2. pose all hands of the chunk with the hand model in one batch per side;
3. translate each hand to its place in front of the camera (:func:`.camera.place_hand`);
4. shade vertices (:mod:`.appearance`) and render every hand in one batch with
   :func:`hiu_model.render.render_rgb` (per-hand colour and depth buffers);
5. per scene, composite the hands over a procedural background by depth, add a soft cast
   shadow, occluders and sensor noise;
6. label each hand exactly: 3D joints (camera frame, metres), their projection, visibility,
   the visible-pixel mask, the box, K, the MANO pose (relative to the model's mean pose) and
   betas.

Visibility (COCO 0/1/2) comes from the depth buffer: a joint lies inside its finger, so it
counts as visible (2) when the nearest surface at its pixel is not more than the local
half-thickness of the hand in front of it (:data:`VISIBILITY_TOLERANCE_M`, per joint), and no
occluder covers it; otherwise, or outside the image, it is labelled occluded (1). All joints
are labelled (none is 0). The mask is the hand's *visible* pixels (COCO modal masks): pixels
where this hand is the nearest surface and no occluder covers it. The box is the amodal box
of the projected mesh, clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from hiu_data.io import images as image_io
from hiu_data.io import rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import FINGERS, NUM_JOINTS, TIPS
from hiu_data.synth import appearance, backgrounds, camera, forearm, occluders, poses
from hiu_data.synth.profiles import FORMATS, Profile
from hiu_data.synth.rig import HandRig, get_rig

CHUNK = 16
"""Scenes rendered together; fixed so that results do not depend on the number of workers."""
WILD_STREAM = 100


def stream_of(profile: Profile) -> int:
    """The random stream of an output kind: outputs written with one seed (the demo writes six
    raw layouts) get different scenes, not the same scenes through another camera."""
    return WILD_STREAM if profile.wild else FORMATS.index(profile.name)


DATASET = "synth"
JPEG_QUALITY = (80, 96)


def _tolerances() -> np.ndarray:
    tol = np.full(NUM_JOINTS, 0.012)
    tol[0] = 0.022  # wrist: mid-thickness of the palm's base
    for chain in FINGERS.values():
        tol[chain[0]] = 0.018  # MCP / thumb CMC: inside the palm
    tol[list(TIPS)] = 0.008  # tips are surface vertices; small margin for the pad's curvature
    return tol


VISIBILITY_TOLERANCE_M: np.ndarray = _tolerances()
"""(21,) metres a joint may lie behind the nearest surface at its pixel and still be visible."""


@dataclass
class HandSpec:
    """One hand of a scene before rendering (sampled, not yet posed)."""

    side: str
    prototype: str
    view: str
    pose: np.ndarray  # (48,) MANO-format, relative to this side's mean pose
    betas: np.ndarray  # (10,)
    center_px: tuple[float, float]
    extent_px: float
    tone: np.ndarray | None = None  # (3,) skin colour
    albedo: np.ndarray | None = None  # (V, 3), filled when the rig is known
    vertices: np.ndarray | None = None  # (V, 3) camera frame after placement
    joints: np.ndarray | None = None  # (21, 3) camera frame after placement
    transl: np.ndarray | None = None  # (3,) added to the model output
    arm: np.ndarray | None = None  # (forearm.NUM_VERTS, 3) camera frame, or None
    arm_albedo: np.ndarray | None = None  # (forearm.NUM_VERTS, 3)


@dataclass
class SceneSpec:
    """One image before rendering."""

    index: int
    split: str
    K: np.ndarray
    hands: list[HandSpec]
    lighting: appearance.Lighting
    rng: np.random.Generator
    extras: dict = field(default_factory=dict)


def scene_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` (independent of every other scene)."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


def _sample_camera(rng: np.random.Generator, profile: Profile) -> np.ndarray:
    if profile.fixed_K is not None:
        return np.asarray(profile.fixed_K, dtype=np.float64)
    K = camera.sample_intrinsics(rng, profile.width, profile.height, profile.fov_deg)
    if profile.principal_point is not None:
        K[0, 2], K[1, 2] = profile.principal_point
    return K


def _sample_hand(rng: np.random.Generator, profile: Profile, side: str, right: HandRig, slot: int,
                 num_hands: int) -> HandSpec:
    """Articulation, shape, orientation and framing of one hand."""
    angles, prototype = poses.sample_angles(rng, noise=1.3 if profile.wild else 1.0)
    rotation, view = camera.sample_view(rng, right.forward_dir, right.palmar_dir)
    full = np.zeros((16, 3))
    full[1:] = poses.angles_to_full_pose(angles, right.rest_joints)[1:]
    full[0] = poses.matrix_to_axis_angle(rotation)
    full = full.reshape(48)
    if side == "left":
        from hiu_model.mano import mirror_pose

        # Mirror the right-hand articulation and its view: the left hand is the mirror image.
        full = mirror_pose(full)
    mean = get_rig(side).hands_mean
    pose = full.copy()
    pose[3:] -= mean
    betas = np.clip(rng.normal(0.0, 1.0, 10), -2.5, 2.5)
    short = min(profile.width, profile.height)
    lo, hi = profile.extent
    if num_hands == 2:
        lo, hi = 0.65 * lo, 0.7 * hi
    extent = short * rng.uniform(lo, hi)
    truncate = rng.random() < profile.truncation
    margin = extent * (0.2 if truncate else 0.5)
    if num_hands == 2:
        # One hand per image half, so that they overlap at times but rarely hide each other.
        half = profile.width / 2
        x_lo, x_hi = (margin, half - 0.1 * extent) if slot == 0 else (half + 0.1 * extent, profile.width - margin)
    else:
        x_lo, x_hi = margin, profile.width - margin
    cx = rng.uniform(min(x_lo, x_hi), max(x_lo, x_hi))
    cy = rng.uniform(min(margin, profile.height - margin), max(margin, profile.height - margin))
    return HandSpec(side, prototype, view, pose, betas, (float(cx), float(cy)), float(extent))


def sample_scene(seed: int, index: int, profile: Profile, split: str) -> SceneSpec:
    """Everything random about scene ``index`` except the pixels drawn later from its ``rng``."""
    rng = scene_rng(seed, stream_of(profile), index)
    right = get_rig("right")
    K = _sample_camera(rng, profile)
    both = set(profile.sides) == {"left", "right"}
    num_hands = 2 if both and rng.random() < profile.two_hands else 1
    if num_hands == 2:
        sides = ["right", "left"]
    else:
        sides = [profile.sides[int(rng.integers(0, len(profile.sides)))]]
    hands = [_sample_hand(rng, profile, side, right, slot, num_hands) for slot, side in enumerate(sides)]
    lighting = appearance.sample_lighting(rng, wild=profile.wild)
    tone = appearance.sample_skin_tone(rng)
    for k, hand in enumerate(hands):
        rig = get_rig(hand.side)
        # Two hands mostly belong to one person; now and then to two people.
        hand.tone = tone if k == 0 or rng.random() < 0.75 else appearance.sample_skin_tone(rng)
        hand.albedo = appearance.skin_albedo(rng, hand.tone, rig.rest_vertices, rig.rest_normals, rig.palmar_dir,
                                             rig.tip_vertex_ids)
    return SceneSpec(index, split, K, hands, lighting, rng, extras=dict(profile.extras))


def pose_and_place(scenes: list[SceneSpec]) -> None:
    """Pose every hand of the scenes (batched per side), translate it into its place and give
    it a forearm (drawn from the scene's generator, after everything :func:`sample_scene` drew)."""
    for side in ("right", "left"):
        hands = [(s, h) for s in scenes for h in s.hands if h.side == side]
        if not hands:
            continue
        rig = get_rig(side)
        vertices, joints = rig.pose(np.stack([h.pose for _, h in hands]), np.stack([h.betas for _, h in hands]))
        for (scene, hand), v, j in zip(hands, vertices, joints):
            t = camera.place_hand(v, scene.K, hand.center_px, hand.extent_px)
            hand.transl, hand.vertices, hand.joints = t, v + t, j + t
    for scene in scenes:
        for hand in scene.hands:
            arm = forearm.sample_forearm(scene.rng, hand.joints, hand.side)
            if arm is not None:
                hand.arm = arm[0]
                cloth = backgrounds.random_colors(scene.rng, 1)[0] / 255.0
                hand.arm_albedo = np.where(arm[1][:, None], cloth, hand.tone * 0.97)


def _render(meshes: list[np.ndarray], faces: np.ndarray, Ks: list[np.ndarray], colors: list[np.ndarray],
            width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from hiu_model.render import render_rgb

    rgb, depth, _ = render_rgb(
        torch.as_tensor(np.stack(meshes), dtype=torch.float32), torch.as_tensor(faces),
        torch.as_tensor(np.stack(Ks), dtype=torch.float32), (height, width),
        torch.as_tensor(np.stack(colors), dtype=torch.float32), ambient=1.0,
    )
    return rgb.numpy(), depth.numpy()


def render_hands(scenes: list[SceneSpec], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Render every hand and every forearm of the scenes, each separately, in two batches.

    Returns:
        ``(rgb (2N, H, W, 3) float32 in [0, 1], depth (2N, H, W) float32 metres, inf = empty)``:
        the N hands in scene order, then their N forearms (empty where a hand has none).
    """
    hands = [(s, h) for s in scenes for h in s.hands]
    meshes, colors = [], []
    for scene, hand in hands:
        normals = appearance.vertex_normals(hand.vertices, get_rig(hand.side).faces)
        meshes.append(hand.vertices)
        colors.append(appearance.shade(hand.albedo, hand.vertices, normals, scene.lighting))
    Ks = [s.K for s, _ in hands]
    # Both sides share the topology (the left faces are the right ones with reversed winding,
    # which the renderer ignores), so one face array serves the whole batch.
    rgb, depth = _render(meshes, get_rig("right").faces, Ks, colors, width, height)
    arms, arm_colors = [], []
    for scene, hand in hands:
        if hand.arm is None:  # behind the camera: culled, renders nothing
            arms.append(np.full((forearm.NUM_VERTS, 3), -1.0))
            arm_colors.append(np.zeros((forearm.NUM_VERTS, 3)))
            continue
        normals = appearance.vertex_normals(hand.arm, forearm.FACES)
        arms.append(hand.arm)
        arm_colors.append(appearance.shade(hand.arm_albedo, hand.arm, normals, scene.lighting))
    arm_rgb, arm_depth = _render(arms, forearm.FACES, Ks, arm_colors, width, height)
    return np.concatenate([rgb, arm_rgb]), np.concatenate([depth, arm_depth])


def _visibility(joints: np.ndarray, K: np.ndarray, scene_depth: np.ndarray, occluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(21, 2) projected pixels and (21,) uint8 visibility (2 visible, 1 occluded/outside)."""
    uv = camera.project(joints, K)
    height, width = scene_depth.shape
    vis = np.ones(NUM_JOINTS, np.uint8)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    for j in np.nonzero(inside)[0]:
        col, row = int(uv[j, 0]), int(uv[j, 1])
        # A 3x3 neighbourhood: joints on a silhouette edge are visible if any pixel shows them.
        r0, r1, c0, c1 = max(row - 1, 0), min(row + 2, height), max(col - 1, 0), min(col + 2, width)
        window = scene_depth[r0:r1, c0:c1]
        free = ~occluded[r0:r1, c0:c1]
        if np.any(free & (window >= joints[j, 2] - VISIBILITY_TOLERANCE_M[j])):
            vis[j] = 2
    return uv, vis


def _post_process(rng: np.random.Generator, image: np.ndarray, wild: bool) -> np.ndarray:
    """Sensor-like degradations: gain, blur, noise (float32 HxWx3 in [0, 255] -> uint8)."""
    image = image * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    if rng.random() < (0.35 if wild else 0.2):
        if wild and rng.random() < 0.5:
            length = int(rng.integers(3, 9))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2] = 1.0 / length
            rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
            kernel = cv2.warpAffine(kernel, rotation, (length, length))
            image = cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
        else:
            image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 1.0)))
    sigma = rng.uniform(0.0, 6.0 if wild else 4.0)
    image = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def composite(scene: SceneSpec, rgb: np.ndarray, depth: np.ndarray, profile: Profile
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Background, shadow, hands by depth, occluders and noise for one scene.

    Args:
        rgb, depth: (2n, H, W, 3) / (2n, H, W) renders of the scene's n hands, then their forearms.
    Returns:
        ``(image (H, W, 3) uint8, scene depth (H, W), owner (H, W) int (layer index: hands
        0..n-1, forearms n..2n-1, -1 none),
        occluder coverage (H, W) bool)``.
    """
    rng, width, height, wild = scene.rng, profile.width, profile.height, profile.wild
    styles = backgrounds.WILD_STYLES if wild else backgrounds.LABELED_STYLES
    background, style = backgrounds.random_background(rng, height, width, styles)
    scene.extras["background"] = style
    scene_depth = depth.min(axis=0)
    covered = np.isfinite(scene_depth)
    owner = np.where(covered, depth.argmin(axis=0), -1)
    hand_rgb = rgb[0].copy()
    for k in range(1, len(rgb)):
        np.copyto(hand_rgb, rgb[k], where=(owner == k)[..., None])
    hand_rgb *= 255.0
    image = background.astype(np.float32)
    if rng.random() < 0.5:  # soft cast shadow on the background, offset away from the key light
        light = scene.lighting.key_dir
        offset = np.array([-light[0], -light[1]]) / max(abs(light[2]), 0.3) * 0.06 * min(width, height)
        shift = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
        shadow = cv2.warpAffine(covered.astype(np.float32), shift, (width, height))
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.03 * min(width, height) + 1.0)
        image *= (1.0 - rng.uniform(0.2, 0.5) * shadow)[..., None]
    # Anti-aliased edge: blend the hand over the background with a slightly blurred coverage.
    alpha = cv2.GaussianBlur(covered.astype(np.float32), (3, 3), 0.6)[..., None]
    alpha = np.where(covered[..., None], np.maximum(alpha, 0.5), alpha)
    image = image * (1.0 - alpha) + hand_rgb * alpha
    occluded = np.zeros((height, width), bool)
    if rng.random() < profile.occluders:
        boxes = []
        for k in range(len(scene.hands)):
            ys, xs = np.nonzero(owner == k)
            if len(xs):
                boxes.append(np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]))
        work = np.clip(image, 0, 255).astype(np.uint8)
        occluded = occluders.draw_occluders(rng, work, boxes, int(rng.integers(1, 3)))
        image = work.astype(np.float32)
    return _post_process(rng, image, wild), scene_depth, owner, occluded


def label_hands(scene: SceneSpec, image_bytes: bytes, layer_depth: np.ndarray, scene_depth: np.ndarray,
                owner: np.ndarray, occluded: np.ndarray, width: int, height: int, dataset: str,
                model_name: str) -> list[HandSample]:
    """The HandSample records of one rendered scene (one per hand, sharing ``image_id``).

    ``layer_depth`` (n, H, W) holds each hand's own depth render; ``extras["visible_fraction"]``
    is the share of a hand's rendered pixels that stay visible (not hidden by the other hand,
    a forearm or an occluder).
    """
    samples = []
    image_id = f"{dataset}/{scene.split}/{scene.index:06d}"
    for k, hand in enumerate(scene.hands):
        uv, vis = _visibility(hand.joints, scene.K, scene_depth, occluded)
        mask = (owner == k) & ~occluded
        rendered = int(np.isfinite(layer_depth[k]).sum())
        corners = camera.project(hand.vertices, scene.K)
        lo = np.clip(corners.min(axis=0), 0, [width, height])
        hi = np.clip(corners.max(axis=0), 0, [width, height])
        samples.append(HandSample(
            sample_id=f"{image_id}/{hand.side}", dataset=dataset, split=scene.split, image_id=image_id,
            width=width, height=height, hand_side=hand.side, bbox=np.concatenate([lo, hi - lo]),
            visibility=vis, image_bytes=image_bytes, keypoints_2d=uv, keypoints_3d=hand.joints,
            camera_K=scene.K, mano_pose=hand.pose, mano_betas=hand.betas, mask=rle.encode(mask),
            extras={"hand_model": model_name, "prototype": hand.prototype, "view": hand.view,
                    "mano_transl": [float(x) for x in hand.transl],
                    "visible_fraction": round(float(mask.sum()) / max(rendered, 1), 4), **scene.extras},
        ))
    return samples


def render_chunk(seed: int, indices: list[int], splits: list[str], profile: Profile,
                 dataset: str = DATASET) -> list[tuple[int, bytes, list[HandSample]]]:
    """Generate the scenes ``indices`` (one chunk).

    Returns:
        per scene ``(index, encoded image bytes, records)``, one record per hand; the records
        of a scene embed the same bytes.
    """
    scenes = [sample_scene(seed, i, profile, s) for i, s in zip(indices, splits)]
    pose_and_place(scenes)
    rgb, depth = render_hands(scenes, profile.width, profile.height)
    num_hands = sum(len(s.hands) for s in scenes)
    out, start = [], 0
    model_name = get_rig("right").name
    for scene in scenes:
        n = len(scene.hands)
        layers = list(range(start, start + n)) + list(range(num_hands + start, num_hands + start + n))
        image, scene_depth, owner, occluded = composite(scene, rgb[layers], depth[layers], profile)
        start += n
        quality = int(scene.rng.integers(*JPEG_QUALITY))
        data = image_io.encode(image, profile.image_ext, quality=quality)
        records = label_hands(scene, data, depth[layers[:n]], scene_depth, owner, occluded, profile.width,
                              profile.height, dataset, model_name)
        out.append((scene.index, data, records))
    return out
