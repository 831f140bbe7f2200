"""Run a trained HIU-DMTL on images and bring every prediction back to the image's frame.

The network sees the same square crop as in training (the hand box widened by
``DataOptions.margin``, resized to ``input_size``; a left hand is flipped into the right-hand
frame) and predicts in that crop. This module maps the predictions back:

- 2D keypoints (heat-map branch: arg-max with sub-pixel refinement of the last stack's maps;
  mesh branch: the projected joints) -> image pixels through the inverse crop affine;
- the mask probability and the rendered silhouette (``mask_size`` maps over the crop) ->
  warped back to the full image bilinearly, thresholded at 0.5;
- 3D joints and vertices (root-relative metres in the crop camera frame) -> the stored image's
  camera axes (un-rotated and, for a left hand, mirrored back: the mesh then has the left
  hand's geometry but the right MANO mesh's face winding);
- the MANO pose -> the image's hand side and camera orientation (``pose_to_image``).

Hand side: a right hand is cropped as is, a left hand mirrored. When the side is unknown
(``"auto"``, the default) both crops are run and the one whose prediction is more
self-consistent (:func:`self_consistency`) is kept; its side is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS
from hiu_data.targets import decode_heatmaps, to_cv2_affine
from hiu_model.crop import CropTransform, normalise, warp_image

log = logging.getLogger(__name__)

SIDES = ("right", "left", "auto")


@dataclass
class Prediction:
    """One hand's prediction in the stored image's frame (J = 21 joints, V vertices).

    Attributes:
        image_index: position of the image in the input list.
        bbox: (4,) float32 x, y, w, h image pixels, the box the crop was built around.
        hand_side: ``left`` or ``right`` (the given side, or the chosen one for ``auto``).
        keypoints_2d: (J, 2) float32 image pixels, heat-map branch (NaN without heat-maps).
        keypoint_confidence: (J,) float32 in [0, 1], heat-map peak value of each joint.
        mesh_keypoints_2d: (J, 2) float32 image pixels, projected mesh joints; or None.
        mask: (H, W) bool hand mask of the full image (mask head); or None.
        silhouette: (H, W) bool rendered mesh silhouette of the full image; or None.
        keypoints_3d: (J, 3) float32 metres, wrist-relative, camera axes of the image; or None.
        vertices: (V, 3) float32 metres, wrist-relative, same frame; or None.
        mano_pose: (48,) float32 axis-angle relative to the mean pose, the image's side and
            camera orientation; or None. mano_betas: (10,) float32; or None.
        camera: (3,) float32 weak perspective (s px/m, tx, ty px) in crop pixels; or None.
        crop_affine: (2, 3) float32 image pixels -> crop pixels.
        scores: ``peak`` (mean keypoint confidence), ``keypoint_agreement`` (mean distance of
            heat-map and mesh keypoints in units of the crop side; 0 = perfect agreement),
            ``mask_silhouette_iou``, and ``consistency`` (:func:`self_consistency`, in [0, 1]);
            each present when its branches are.
    """

    image_index: int
    bbox: np.ndarray
    hand_side: str
    keypoints_2d: np.ndarray
    keypoint_confidence: np.ndarray
    crop_affine: np.ndarray
    mesh_keypoints_2d: np.ndarray | None = None
    mask: np.ndarray | None = None
    silhouette: np.ndarray | None = None
    keypoints_3d: np.ndarray | None = None
    vertices: np.ndarray | None = None
    mano_pose: np.ndarray | None = None
    mano_betas: np.ndarray | None = None
    camera: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)


def crop_outputs(output: Any, input_size: int, smoothing: float = 0.0) -> dict[str, np.ndarray]:
    """Batched numpy predictions in crop coordinates from a :class:`hiu_model.model.HIUOutput`.

    ``smoothing``: the heat-maps' blur before decoding, map pixels
    (``ModelConfig.heatmap_decode_smoothing``; :func:`hiu_data.targets.decode_heatmaps`).

    Returns (only the keys whose branch ran): ``heatmap_keypoints`` (B, J, 2) crop px and
    ``heatmap_peaks`` (B, J); ``mask_probability`` (B, m, m) in [0, 1]; ``mesh_keypoints``
    (B, J, 2) crop px, ``joints_3d`` (B, J, 3) and ``vertices`` (B, V, 3) metres (wrist-relative,
    crop camera frame), ``silhouette`` (B, m, m), ``mano_pose`` (B, 48), ``mano_betas`` (B, 10),
    ``camera`` (B, 3).
    """
    out: dict[str, np.ndarray] = {}
    if output.heatmaps:
        out["heatmap_peaks"], out["heatmap_keypoints"] = _decode_last(output.heatmaps, input_size, smoothing)
    if output.masks:
        out["mask_probability"] = torch.sigmoid(output.masks[-1][:, 0].detach().float()).cpu().numpy()
    for key, name in (("joints_2d", "mesh_keypoints"), ("joints_3d", "joints_3d"), ("vertices", "vertices"),
                      ("silhouette", "silhouette"), ("mano_pose", "mano_pose"), ("mano_betas", "mano_betas"),
                      ("camera", "camera")):
        value = getattr(output, key, None)
        if value is not None:
            out[name] = value.detach().float().cpu().numpy()
    return out


def heatmap_pass(net: torch.nn.Module, image: torch.Tensor, camera_K: torch.Tensor | None,
                 input_size: int, smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The last heat-maps' peaks (B, J) and arg-max keypoints (B, J, 2, crop px) of ``net`` on
    (B, 3, S, S) normalised crops. A network with ``last_heatmaps`` (:class:`HIUDMTL`) computes
    those maps alone; another runs whole but renders no silhouette (the renderer, about 40 % of a
    ``tiny`` forward pass on the CPU, is not needed by the passes that only look at the heat-maps)."""
    last = getattr(net, "last_heatmaps", None)
    if last is not None:
        return _decode_last([last(image)], input_size, smoothing)
    no_rows = torch.zeros(0, dtype=torch.long, device=image.device)
    return _decode_last(net(image, camera_K, no_rows).heatmaps, input_size, smoothing)


def _decode_last(heatmaps: Sequence[torch.Tensor], input_size: int,
                 smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Peaks (B, J) and arg-max keypoints (B, J, 2) in crop px of the last of the stacks' heat-maps."""
    maps = heatmaps[-1].detach().float().cpu().numpy()
    keypoints, peaks = decode_heatmaps(maps, smoothing)
    return peaks, keypoints * np.float32(input_size / maps.shape[-1])


def map_to_image(probability: np.ndarray, crop_affine: np.ndarray, input_size: int,
                 image_size: tuple[int, int]) -> np.ndarray:
    """A (m, m) map over the crop -> (H, W) float32 over the image (zero outside the crop).

    Args:
        probability: (m, m) float values in the crop's map pixels.
        crop_affine: (2, 3) image pixels -> crop pixels (continuous coordinates).
        input_size: crop side S in pixels.
        image_size: (H, W) of the image.
    """
    m = probability.shape[-1]
    image_to_map = np.asarray(crop_affine, np.float64) * (m / input_size)
    height, width = int(image_size[0]), int(image_size[1])
    return cv2.warpAffine(np.ascontiguousarray(probability, np.float32), to_cv2_affine(image_to_map), (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def points_to_image(points: np.ndarray, crop_affine: np.ndarray) -> np.ndarray:
    """(..., N, 2) crop pixels -> image pixels with the inverse of a (2, 3) image->crop affine."""
    matrix = np.vstack([np.asarray(crop_affine, np.float64), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(matrix)[:2]
    p = np.asarray(points, np.float64)
    return (p @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)


def self_consistency(crop: dict[str, np.ndarray], index: int) -> float:
    """How much the branches of one crop's prediction agree, in [0, 1] (higher = better).

    The mean of: the mean heat-map peak (clipped to [0, 1]); ``exp(-d / 0.05)`` with ``d`` the
    mean distance of heat-map and mesh keypoints in units of the crop side (with
    ``model.camera_from_keypoints`` the mesh is already placed on the heat-map keypoints, so this
    measures how well the regressed pose fits them); the IoU of mask and silhouette at 0.5.
    Terms whose branches did not run are left out.
    """
    terms = []
    if "heatmap_peaks" in crop:
        terms.append(float(np.clip(crop["heatmap_peaks"][index], 0, 1).mean()))
    if "heatmap_keypoints" in crop and "mesh_keypoints" in crop:
        distance = np.linalg.norm(crop["heatmap_keypoints"][index] - crop["mesh_keypoints"][index], axis=-1).mean()
        side = float(crop.get("_input_size", np.array(1.0)))
        terms.append(float(np.exp(-distance / side / 0.05)))
    if "mask_probability" in crop and "silhouette" in crop:
        a, b = crop["mask_probability"][index] > 0.5, crop["silhouette"][index] > 0.5
        union = (a | b).sum()
        terms.append(float((a & b).sum() / union) if union else 1.0)
    return float(np.mean(terms)) if terms else 0.0


def _boxes_per_image(images: Sequence[np.ndarray], boxes: Sequence[Any] | None) -> list[np.ndarray]:
    if boxes is None:
        return [np.array([[0.0, 0.0, im.shape[1], im.shape[0]]]) for im in images]
    if len(boxes) != len(images):
        raise ValueError(f"{len(boxes)} box lists for {len(images)} images")
    out = []
    for image, box in zip(images, boxes):
        array = np.asarray(box if box is not None and len(box) else [[0.0, 0.0, image.shape[1], image.shape[0]]],
                           np.float64)
        out.append(array.reshape(-1, 4))
    return out


def _sides_per_box(boxes: list[np.ndarray], sides: Any) -> list[list[str]]:
    if sides is None or isinstance(sides, str):
        side = sides or "auto"
        if side not in SIDES:
            raise ValueError(f"hand side {side!r} is not one of {', '.join(SIDES)}")
        return [[side] * len(b) for b in boxes]
    out = [[sides_i] * len(b) if isinstance(sides_i, str) else list(sides_i) for b, sides_i in zip(boxes, sides)]
    for names, b in zip(out, boxes):
        if len(names) != len(b) or any(n not in SIDES for n in names):
            raise ValueError(f"hand sides {names} do not match {len(b)} boxes or are not in {', '.join(SIDES)}")
    return out


def _crop(image: np.ndarray, box: np.ndarray, side: str, cfg: Any,
          rotation_deg: float = 0.0) -> tuple[np.ndarray, CropTransform]:
    from hiu_model.data import AugmentParams, crop_for

    height, width = image.shape[:2]
    record = HandSample(sample_id="predict", dataset="predict", split="unlabeled", image_id="predict",
                        width=width, height=height, hand_side=side, bbox=box,
                        visibility=np.zeros(NUM_JOINTS, np.uint8))
    transform = crop_for(record, cfg.data, AugmentParams(rotation_deg=float(rotation_deg)))
    border = tuple(round(255 * v) for v in cfg.data.mean)
    crop = warp_image(np.ascontiguousarray(image), transform.affine, cfg.data.input_size, border)
    return normalise(crop, cfg.data.mean, cfg.data.std), transform


@torch.no_grad()
def predict_images(model: torch.nn.Module, cfg: Any, images: Sequence[np.ndarray], boxes: Sequence[Any] | None = None,
                   sides: Any = "auto", batch_size: int = 16, device: str | torch.device | None = None,
                   masks: bool = True) -> list[Prediction]:
    """Predict every hand of every image.

    Args:
        model: a :class:`hiu_model.model.HIUDMTL` (e.g. from ``load_checkpoint``).
        cfg: its :class:`hiu_model.config.Config` (crop settings from ``cfg.data``).
        images: RGB uint8 arrays (H, W, 3).
        boxes: per image, one (4,) or several (K, 4) hand boxes x, y, w, h in pixels; None
            (or an empty entry) = the whole image is one hand's box.
        sides: ``auto``, ``right`` or ``left`` for all boxes, or per image a side or a list per box.
        batch_size: crops per forward pass.
        device: where to run; default the model's device.
        masks: compute the full-image mask and silhouette (skip for speed when not needed).
    Returns:
        One :class:`Prediction` per box, images in order, boxes in order within an image.
    """
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    per_image = _boxes_per_image(images, boxes)
    side_lists = _sides_per_box(per_image, sides)
    jobs = []  # (image index, box, side tried, original request)
    for i, (bxs, sds) in enumerate(zip(per_image, side_lists)):
        for box, side in zip(bxs, sds):
            for tried in (("right", "left") if side == "auto" else (side,)):
                jobs.append((i, box, tried, side))
    results: list[tuple[float, Prediction]] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        rotations = _upright_rotations(model, cfg, images, chunk, device) if cfg.data.upright else [0.0] * len(chunk)
        crops, transforms = zip(*(_crop(images[i], box, tried, cfg, r) for (i, box, tried, _), r in zip(chunk, rotations)))
        batch = torch.from_numpy(np.stack(crops)).to(device)
        crop = crop_outputs(model(batch), cfg.data.input_size, cfg.model.heatmap_decode_smoothing)
        crop["_input_size"] = np.array(float(cfg.data.input_size))
        for k, ((i, box, tried, _), t) in enumerate(zip(chunk, transforms)):
            results.append((self_consistency(crop, k), _to_image(crop, k, images[i], i, box, tried, t, cfg, masks)))
    out: list[Prediction] = []
    cursor = 0
    for i, (bxs, sds) in enumerate(zip(per_image, side_lists)):
        for side in sds:
            if side == "auto":
                (score_r, pred_r), (score_l, pred_l) = results[cursor], results[cursor + 1]
                out.append(pred_r if score_r >= score_l else pred_l)
                cursor += 2
            else:
                out.append(results[cursor][1])
                cursor += 1
    return out


def _upright_rotations(model: torch.nn.Module, cfg: Any, images: Sequence[np.ndarray], chunk: Sequence[tuple],
                       device: torch.device) -> np.ndarray:
    """(len(chunk),) degrees that turn each job's hand upright (:func:`hiu_model.upright.search_upright`)."""
    from hiu_model.data import is_mirrored
    from hiu_model.tta import without_tta
    from hiu_model.upright import search_upright

    plain = without_tta(model)
    mirrored = np.array([is_mirrored(tried, cfg.data) for _, _, tried, _ in chunk])

    def run(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crops = [_crop(images[i], box, tried, cfg, a)[0] for (i, box, tried, _), a in zip(chunk, angles)]
        return heatmap_pass(plain, torch.from_numpy(np.stack(crops)).to(device), None, cfg.data.input_size,
                            cfg.model.heatmap_decode_smoothing)

    return search_upright(run, mirrored)


def _to_image(crop: dict[str, np.ndarray], k: int, image: np.ndarray, image_index: int, box: np.ndarray,
              side: str, t: CropTransform, cfg: Any, masks: bool) -> Prediction:
    size = cfg.data.input_size
    hw = image.shape[:2]
    affine = t.affine.astype(np.float32)
    nan2 = np.full((NUM_JOINTS, 2), np.nan, np.float32)
    pred = Prediction(
        image_index=image_index, bbox=np.asarray(box, np.float32), hand_side=side,
        keypoints_2d=points_to_image(crop["heatmap_keypoints"][k], affine) if "heatmap_keypoints" in crop else nan2,
        keypoint_confidence=(np.clip(crop["heatmap_peaks"][k], 0, 1).astype(np.float32) if "heatmap_peaks" in crop
                             else np.zeros(NUM_JOINTS, np.float32)),
        crop_affine=affine)
    if "mesh_keypoints" in crop:
        pred.mesh_keypoints_2d = points_to_image(crop["mesh_keypoints"][k], affine)
        pred.keypoints_3d = t.unrotate_3d(crop["joints_3d"][k])
        pred.vertices = t.unrotate_3d(crop["vertices"][k])
        pred.mano_pose = t.pose_to_image(crop["mano_pose"][k])
        pred.mano_betas = crop["mano_betas"][k].astype(np.float32)
        pred.camera = crop["camera"][k].astype(np.float32)
    if masks and "mask_probability" in crop:
        pred.mask = map_to_image(crop["mask_probability"][k], affine, size, hw) > 0.5
    if masks and "silhouette" in crop:
        pred.silhouette = map_to_image(crop["silhouette"][k], affine, size, hw) > 0.5
    pred.scores = _scores(crop, k, box)
    return pred


def _scores(crop: dict[str, np.ndarray], k: int, box: np.ndarray) -> dict[str, float]:
    scores: dict[str, float] = {}
    if "heatmap_peaks" in crop:
        scores["peak"] = float(np.clip(crop["heatmap_peaks"][k], 0, 1).mean())
    if "heatmap_keypoints" in crop and "mesh_keypoints" in crop:
        distance = np.linalg.norm(crop["heatmap_keypoints"][k] - crop["mesh_keypoints"][k], axis=-1).mean()
        scores["keypoint_agreement"] = float(distance / float(crop["_input_size"]))
    if "mask_probability" in crop and "silhouette" in crop:
        a, b = crop["mask_probability"][k] > 0.5, crop["silhouette"][k] > 0.5
        union = (a | b).sum()
        scores["mask_silhouette_iou"] = float((a & b).sum() / union) if union else 1.0
    scores["consistency"] = self_consistency(crop, k)
    return scores
