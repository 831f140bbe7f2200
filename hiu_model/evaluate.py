"""Evaluate a trained HIU-DMTL on converted datasets: the numbers of the paper's tables.

Each dataset folder is read without augmentation (the centred crop of training, left hands
mirrored), the model runs on every row (or an evenly spaced subset), and its predictions are
mapped back to the stored image (see :mod:`hiu_model.predict`). The protocols are those of
:mod:`hiu_model.metrics`; in short:

- ``heatmap``: 2D keypoints of the heat-map branch (arg-max with sub-pixel refinement of the
  last stack) in image pixels: PCK@0.05/0.1/0.2 of the box size (``max(w, h)`` of the
  ground-truth box), AUC over 0-30 px, EPE in px, PCKh@0.7 where rows carry ``head_size``
  in their extras (CMU).
- ``mesh``: the mesh branch. 2D: its projected joints with the same 2D metrics. 3D (rows with
  3D labels): wrist-relative PCK at 20-50 mm and its AUC, MPJPE, PA-MPJPE (mm). Vertices (rows
  with MANO labels; the ground-truth mesh is the checkpoint's hand model posed with the
  labelled parameters): PA-MPVPE and F@5 / F@15 mm after FreiHAND's similarity alignment.
- ``mask`` (the mask head) and ``silhouette`` (the rendered mesh): the ``mask_size``
  probability over the crop is warped back onto the full image (bilinear), thresholded at
  0.5, and compared with the full-resolution ground-truth RLE: IoU (per hand, averaged) and
  mIoU (background and hand, pooled).

3D is compared in the crop camera frame (for left hands: mirrored), which is a rigid motion
(or a reflection) of the camera frame and leaves every distance unchanged.

Which rows: the split given, else ``test``, else ``val``, else all rows of the folder. Each
dataset folder gets its own table, and ``overall`` pools the rows of all of them (each metric
over the rows labelled for it: 2D PCK and EPE over the labelled joints of every dataset, 3D
over the rows with 3D, ...); a metric no row is labelled for is left out.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from hiu_data.io import rle
from hiu_data.io.parquet import find_dataset_dirs, load_manifest
from hiu_model import metrics
from hiu_model.predict import crop_outputs, heatmap_pass, map_to_image, points_to_image
from hiu_model.sampling import DataSource, as_source, no_rows_error
from hiu_model.tta import without_tta
from hiu_model.upright import search_upright

log = logging.getLogger(__name__)

PROTOCOL = {
    "heatmap": "2D of the heat-map branch in image px (arg-max of the last heat-maps, blurred by "
               "model.heatmap_decode_smoothing map px, log-parabola refined); PCK@t: error <= t * max(w, h) of the GT box; "
               "AUC: PCK over 20 thresholds on 0-30 px (trapezoid / range, hand3d; not mmpose's left sum); EPE: mean px; "
               "PCKh@0.7: 0.7 * head_size; a non-finite prediction of a labelled joint is a miss (mean errors inf)",
    "mesh": "projected mesh joints (2D as heatmap); 3D wrist-relative mm: PCK 20-50 mm, AUC over 31 thresholds "
            "on 20-50 mm, MPJPE, PA-MPJPE (FreiHAND similarity alignment, centroid-centred); vertices: PA-MPVPE, "
            "F@5/F@15 mm (nearest neighbour both ways) after alignment",
    "mask": "mask head, crop probability warped to the image, > 0.5; IoU per hand averaged; mIoU of background "
            "and hand pooled over pixels",
    "silhouette": "rendered mesh silhouette, same protocol as mask",
    "overall": "the hands of all datasets pooled (not a mean of the datasets' numbers); each metric over the "
               "hands labelled for it, so a 2D-only dataset leaves the 3D numbers as they are",
}


def default_split(folder: Path, preferred: Sequence[str] = ("test", "val")) -> str | None:
    """The split to evaluate in a dataset folder: the first of ``preferred`` it has, else all (None)."""
    counts = load_manifest(folder).get("counts", {})
    for split in preferred:
        if counts.get(split, 0) > 0:
            return split
    return None


def subset_indices(length: int, max_samples: int) -> np.ndarray:
    """Evenly spaced row indices, (n,) int64 ascending (all rows when ``max_samples`` is 0 or at
    least ``length``)."""
    if max_samples <= 0 or max_samples >= length:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_samples).round().astype(np.int64))


def _mask_counts_in_image(probability: np.ndarray, affine: np.ndarray, size: int, mask: dict[str, Any] | None,
                          hw: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.full(4, -1, np.int64)
    predicted = map_to_image(probability, affine, size, hw) > 0.5
    return metrics.mask_counts(predicted[None], rle.decode(mask)[None] != 0)[0]


@torch.no_grad()
def collect(model: torch.nn.Module, cfg: Any, folder: str | Path, split: str | None = None, max_samples: int = 0,
            batch_size: int = 16, device: str | torch.device | None = None, num_workers: int = 0,
            progress: Callable[[int], None] | None = None,
            predictor: Callable[[dict[str, torch.Tensor]], dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Run the model over one dataset folder and gather predictions and labels per row.

    ``predictor`` replaces the model: it maps a batch to the crop-space dict of
    :func:`hiu_model.predict.crop_outputs` (to score other predictions with this protocol).

    Returns arrays over the N evaluated rows: ``gt_2d``/``heatmap_2d``/``mesh_2d`` (N, J, 2)
    image px, ``valid_2d`` (N, J), ``bbox`` (N, 4), ``head_size`` (N,) (NaN if absent),
    ``mask_counts``/``silhouette_counts`` (N, 4) (rows of -1 without a mask label),
    ``gt_3d``/``pred_3d`` (N, J, 3) m, ``has_3d`` (N,), ``gt_vertices``/``pred_vertices``
    (N, V, 3) m and ``has_mano`` (N,); keys of branches that did not run are absent.
    """
    from hiu_model.data import HandCropDataset

    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dataset = HandCropDataset(folder, split=split, options=cfg.data, train=False)
    if len(dataset) == 0:
        raise no_rows_error(folder, split, how="choose one with --split", rejected=dataset.rejected)
    indices = subset_indices(len(dataset), max_samples)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False)
    size, smoothing = cfg.data.input_size, cfg.model.heatmap_decode_smoothing
    hand = getattr(model, "hand_model", None)
    rows: dict[str, list[np.ndarray]] = {}

    def add(key: str, value: Any) -> None:
        rows.setdefault(key, []).append(np.asarray(value))

    def forward(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        if predictor is not None:
            return predictor(batch)
        return crop_outputs(model(batch["image"].to(device), batch["camera_K"].to(device)), size, smoothing)

    def search(chunk: list[int], angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The search's passes only pick the angle: the heat-maps of the crops (no targets built),
        # without rotation averaging.
        if predictor is not None:
            crop = predictor(dataset.batch_at(chunk, angles))
            return crop["heatmap_peaks"], crop["heatmap_keypoints"]
        return heatmap_pass(without_tta(model), dataset.images_at(chunk, angles).to(device), None, size, smoothing)

    batches = upright_batches(dataset, indices, batch_size, search) if cfg.data.upright else loader
    for batch in batches:
        crop = forward(batch)
        affines = batch["crop_affine"].numpy()
        if "joints_3d" in crop and hand is not None:
            posed = hand(batch["mano_pose"].to(device), batch["mano_betas"].to(device), None)
            gt_vertices = (posed.vertices - posed.joints[:, :1]).float().cpu().numpy()
        for k, index in enumerate(batch["index"].tolist()):
            record = dataset.sample(index)
            hw = (record.height, record.width)
            gt = record.keypoints_2d if record.keypoints_2d is not None else np.full((len(record.visibility), 2), np.nan)
            add("gt_2d", gt)
            add("valid_2d", (record.visibility > 0) & np.isfinite(gt).all(-1))
            add("bbox", record.bbox)
            add("head_size", float((record.extras or {}).get("head_size", math.nan) or math.nan))
            if "heatmap_keypoints" in crop:
                add("heatmap_2d", points_to_image(crop["heatmap_keypoints"][k], affines[k]))
            if "mask_probability" in crop:
                add("mask_counts", _mask_counts_in_image(crop["mask_probability"][k], affines[k], size, record.mask, hw))
            if "joints_3d" in crop:
                add("mesh_2d", points_to_image(crop["mesh_keypoints"][k], affines[k]))
                add("silhouette_counts", _mask_counts_in_image(crop["silhouette"][k], affines[k], size, record.mask, hw))
                add("pred_3d", crop["joints_3d"][k])
                add("gt_3d", batch["keypoints_3d"][k].numpy())
                add("has_3d", bool(batch["has_3d"][k] > 0))
                add("pred_vertices", crop["vertices"][k])
                add("gt_vertices", gt_vertices[k] if hand is not None else crop["vertices"][k] * np.nan)
                add("has_mano", bool(batch["has_mano"][k] > 0))
        if progress is not None:
            progress(len(batch["index"]))
    return {key: np.stack(values) for key, values in rows.items()}


def upright_batches(dataset: Any, indices: np.ndarray, batch_size: int,
                    search: Callable[[list[int], np.ndarray], tuple[np.ndarray, np.ndarray]]
                    ) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``dataset`` items ``indices``, each crop turned upright by the search of
    :func:`hiu_model.upright.search_upright` run with ``search`` ((items, their angles (B,) in
    degrees) -> heat-map peaks (B, J) and keypoints (B, J, 2) in crop px); no labels are used."""
    from hiu_model.data import is_mirrored

    for start in range(0, len(indices), batch_size):
        chunk = [int(i) for i in indices[start:start + batch_size]]
        mirrored = np.array([is_mirrored(dataset.sample(i).hand_side, dataset.options) for i in chunk])

        def run(angles: np.ndarray, chunk: list[int] = chunk) -> tuple[np.ndarray, np.ndarray]:
            return search(chunk, angles)

        yield dataset.batch_at(chunk, search_upright(run, mirrored))


def compute_metrics(data: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Metrics of each branch from :func:`collect` output (one dataset, or several concatenated).

    Each metric is computed over the rows that carry its labels; a metric no row has labels for
    (2D on unlabeled rows, 3D on 2D-only ones, ...) is left out rather than given as NaN.
    """
    out: dict[str, dict[str, float]] = {}
    if "gt_2d" not in data or len(data["gt_2d"]) == 0:
        return out
    head = data["head_size"] if np.isfinite(data["head_size"]).any() else None
    has_2d = bool(data["valid_2d"].any())
    if "heatmap_2d" in data and has_2d:
        out["heatmap"] = metrics.metrics_2d(data["heatmap_2d"], data["gt_2d"], data["valid_2d"], data["bbox"], head)
    if "mesh_2d" in data:
        mesh: dict[str, float] = {}
        if has_2d:
            mesh = metrics.metrics_2d(data["mesh_2d"], data["gt_2d"], data["valid_2d"], data["bbox"], head)
        has_3d = data["has_3d"].astype(bool)
        if has_3d.any():
            mesh.update(metrics.metrics_3d(data["pred_3d"][has_3d], data["gt_3d"][has_3d]))
        has_mano = data["has_mano"].astype(bool)
        if has_mano.any():
            mesh.update(metrics.metrics_mesh(data["pred_vertices"][has_mano], data["gt_vertices"][has_mano]))
        if mesh:
            out["mesh"] = mesh
    for branch, key in (("mask", "mask_counts"), ("silhouette", "silhouette_counts")):
        if key in data:
            labelled = data[key][:, 0] >= 0
            if labelled.any():
                out[branch] = metrics.metrics_mask(data[key][labelled])
    return out


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = set.intersection(*(set(p) for p in parts)) if parts else set()
    out = {}
    for key in keys:
        arrays = [p[key] for p in parts if len(p[key])]
        # Vertex arrays of different hand models cannot be pooled; leave them out of overall.
        if arrays and len({a.shape[1:] for a in arrays}) == 1:
            out[key] = np.concatenate(arrays)
    return out


def evaluate(model: torch.nn.Module, cfg: Any, paths: Sequence[str | Path | dict[str, Any] | DataSource],
             split: str | None = None, max_samples: int = 0, batch_size: int = 16,
             device: str | torch.device | None = None, num_workers: int = 0,
             progress: Callable[[int], None] | None = None,
             preferred_splits: Sequence[str] = ("test", "val")) -> dict[str, Any]:
    """Per-dataset and overall metrics of every branch.

    Args:
        model, cfg: a :class:`hiu_model.model.HIUDMTL` and its config.
        paths: dataset folders (or folders of them), ``{path, split}`` mappings or
            :class:`hiu_model.sampling.DataSource` (its weight is ignored).
        split: split to evaluate; None = per folder the first of ``preferred_splits`` it has,
            else all rows.
        max_samples: evaluate at most this many rows per folder (evenly spaced; 0 = all).
    Returns:
        ``{"datasets": {name: {"split", "rows", "heatmap": {...}, "mesh": {...}, "mask": {...},
        "silhouette": {...}}}, "overall": {...}, "protocol": PROTOCOL}``; a branch or metric
        no row has labels for is absent; a mean error is inf where a labelled joint was
        predicted non-finite.
    """
    report: dict[str, Any] = {"datasets": {}, "overall": {}, "protocol": PROTOCOL}
    parts = []
    for entry in paths:
        source = as_source(entry, split)
        for folder in find_dataset_dirs(Path(source.path)):
            chosen = source.split if source.split is not None else default_split(folder, preferred_splits)
            data = collect(model, cfg, folder, chosen, max_samples, batch_size, device, num_workers, progress)
            name = str(load_manifest(folder).get("dataset", folder.name))
            while name in report["datasets"]:
                name += "'"
            report["datasets"][name] = {"path": str(folder), "split": chosen or "all",
                                        "rows": int(len(data.get("gt_2d", []))), **compute_metrics(data)}
            parts.append(data)
    if parts:
        report["overall"] = {"rows": int(sum(len(p.get("gt_2d", [])) for p in parts)), **compute_metrics(_concat(parts))}
    return report


def flatten(table: dict[str, Any]) -> dict[str, float]:
    """``{"heatmap": {"pck@0.1": x}}`` -> ``{"heatmap/pck@0.1": x}`` (numbers only)."""
    out: dict[str, float] = {}
    for branch, values in table.items():
        if isinstance(values, dict):
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    out[f"{branch}/{name}"] = float(value)
    return out


def json_safe(value: Any) -> Any:
    """NaN and infinities -> None, recursively, so the report is strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
