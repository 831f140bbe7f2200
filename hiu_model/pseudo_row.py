"""Pseudo-labelled rows: one hand's prediction as a ``hand_sample`` row.

A prediction of :func:`hiu_model.predict.predict_images` on a hand of an image folder becomes a
row of the pseudo-labelled dataset (:mod:`hiu_model.pseudo_label`) with

- ``keypoints_2d`` (heat-map branch, image pixels) and ``keypoint_confidence`` (each joint's
  heat-map peak, in [0, 1]); visibility 2 where a joint was predicted inside the image,
  1 outside it (as the converters mark datasets without occlusion labels);
- ``mask``: the mask head's full-image mask as RLE;
- ``mano_pose`` / ``mano_betas`` in the image's hand side and camera orientation, and
  ``keypoints_3d`` in the camera frame of an *assumed* pinhole camera ``camera_K`` (focal
  length ``max(W, H)`` pixels, principal point at the image centre: folder images carry no
  intrinsics). The wrist's depth follows from the weak-perspective scale (``f / s``) and its
  position from the mesh's projected root, so the 3D joints project onto the mesh branch's
  2D joints;
- ``confidence``: the prediction's self-consistency (``Prediction.scores["consistency"]``):
  the mean of the heat-map peak strength, the agreement of heat-map keypoints with the
  projected mesh joints (``exp(-d / 0.05)``, ``d`` in units of the crop side) and the IoU of
  the predicted mask with the rendered silhouette, the paper's consistency constraints used
  as a quality score; the three terms are kept in ``extras["pseudo"]``;
- ``bbox``: the tight box of the predicted keypoints and mask (the detection box when
  nothing was predicted), the detection box itself (clipped to the image by the ``folder``
  reader) in ``extras["pseudo"]["box"]``;
- ``hand_side``: the box's side when the detections give it, else the side whose crop
  (plain or mirrored) predicts more self-consistently;
- ``label_source = "pseudo:<sha256 of model.safetensors>"``, ``review_status = "pending"``,
  ``split = "unlabeled"`` (unverified labels: ``hiu-data review pull`` moves accepted hands
  to ``train``), the original image bytes embedded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiu_data.formats._common import bbox_from_keypoints, visibility_in_image
from hiu_data.io import rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import ROOT


def assumed_camera(width: int, height: int) -> np.ndarray:
    """(3, 3) float32 pinhole intrinsics assumed for an image without any: focal length
    ``max(W, H)`` pixels (about 53 degrees across the longer side), centre at the middle."""
    f = float(max(width, height))
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], np.float32)


def camera_frame_joints(prediction: Any, K: np.ndarray) -> np.ndarray | None:
    """Wrist-relative 3D joints (J, 3) of a prediction -> camera-frame metres under ``K``.

    The weak-perspective camera (s px/m, tx, ty) lives in crop pixels; the crop is an
    axis-aligned scaling (possibly mirrored) of the image, so ``s / crop scale`` is the scale
    in image pixels, the wrist's depth is ``f / that`` and (tx, ty) mapped to the image is the
    wrist's projection.
    """
    if prediction.keypoints_3d is None or prediction.camera is None:
        return None
    from hiu_model.predict import points_to_image

    affine = np.asarray(prediction.crop_affine, np.float64)
    crop_scale = float(np.hypot(affine[0, 0], affine[1, 0]))
    scale = float(prediction.camera[0]) / crop_scale
    if not np.isfinite(scale) or scale <= 0:
        return None
    depth = float(K[0, 0]) / scale
    u, v = points_to_image(np.asarray(prediction.camera[1:3], np.float32)[None], affine)[0]
    root = np.array([(u - K[0, 2]) * depth / K[0, 0], (v - K[1, 2]) * depth / K[1, 1], depth])
    joints = np.asarray(prediction.keypoints_3d, np.float64)
    return (joints - joints[ROOT] + root).astype(np.float32)


def _tight_box(keypoints: np.ndarray, mask: dict[str, Any] | None, width: int, height: int,
               fallback: np.ndarray) -> np.ndarray:
    """(4,) float32 x, y, w, h: the union of the predicted keypoints' box (clipped to the
    image) and the mask's box; ``fallback`` when neither has any extent."""
    boxes = [bbox_from_keypoints(keypoints, np.isfinite(keypoints).all(1).astype(np.uint8), width, height)]
    if mask is not None:
        boxes.append(rle.to_bbox(mask))
    boxes = [b for b in boxes if b[2] > 0 and b[3] > 0]
    if not boxes:
        return np.asarray(fallback, np.float32)
    corners = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in boxes])
    x0, y0, x1, y1 = corners[:, 0].min(), corners[:, 1].min(), corners[:, 2].max(), corners[:, 3].max()
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def labelled_row(row: HandSample, prediction: Any, image_bytes: bytes, name: str, label_source: str) -> HandSample:
    """A folder row plus its prediction -> the pseudo-labelled row (see the module docstring)."""
    kp = np.asarray(prediction.keypoints_2d, np.float32)
    K = assumed_camera(row.width, row.height)
    joints = camera_frame_joints(prediction, K)
    mask = None if prediction.mask is None else rle.encode(prediction.mask)
    extras = dict(row.extras or {})
    extras.pop("hand_side_known", None)  # the side is now the prediction's
    extras["pseudo"] = {"box": [float(v) for v in row.bbox], "camera_assumed": True,
                        "scores": {k: float(v) for k, v in sorted(prediction.scores.items())}}
    return HandSample(
        sample_id=name + row.sample_id[len(row.dataset):], dataset=name, split="unlabeled",
        image_id=name + row.image_id[len(row.dataset):], width=row.width, height=row.height,
        hand_side=prediction.hand_side, bbox=_tight_box(kp, mask, row.width, row.height, row.bbox),
        visibility=visibility_in_image(kp, row.width, row.height), image_bytes=image_bytes, subset=row.subset,
        keypoints_2d=kp, keypoints_3d=joints, camera_K=None if joints is None else K,
        mano_pose=prediction.mano_pose, mano_betas=prediction.mano_betas,
        mask=mask,
        label_source=label_source, review_status="pending",
        keypoint_confidence=np.clip(np.nan_to_num(prediction.keypoint_confidence), 0, 1),
        confidence=float(np.clip(prediction.scores.get("consistency", 0.0), 0.0, 1.0)), extras=extras,
    )
