"""Evaluation protocol end to end, and prediction back in image coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hiu_data.io.images import decode
from hiu_data.io.parquet import HandDataset
from hiu_model.config import load_config
from hiu_model.evaluate import collect, compute_metrics, evaluate, json_safe, subset_indices
from hiu_model.model import HIUDMTL
from hiu_model.predict import predict_images
from tests.targets.handmade import write_hands


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    folder = write_hands(tmp_path_factory.mktemp("eval"), 6, seed=5, dataset="handmade")
    cfg = load_config(None, "tiny", ["model.input_size=64", "model.num_stacks=1"])
    torch.manual_seed(0)
    return folder, cfg, HIUDMTL(cfg.model).eval()


def test_oracle_predictions_score_perfectly(setup) -> None:
    """Ground truth fed through the crop -> image mapping must score (nearly) perfectly."""
    folder, cfg, model = setup
    hand = model.hand_model

    def oracle(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        posed = hand(batch["mano_pose"], batch["mano_betas"], None)
        maps = batch["mask"].numpy()
        return {"heatmap_keypoints": batch["keypoints_2d"].numpy(), "heatmap_peaks": np.ones((len(maps), 21)),
                "mask_probability": maps, "mesh_keypoints": batch["keypoints_2d"].numpy(),
                "joints_3d": batch["keypoints_3d"].numpy(), "silhouette": maps,
                "vertices": (posed.vertices - posed.joints[:, :1]).numpy()}

    data = collect(model, cfg, folder, batch_size=4, predictor=oracle)
    report = compute_metrics(data)
    for branch in ("heatmap", "mesh"):
        assert report[branch]["pck@0.05"] == 1.0 and report[branch]["epe_px"] < 1e-3
    assert report["mesh"]["mpjpe_mm"] < 1e-3 and report["mesh"]["pa_mpvpe_mm"] < 1e-3
    assert report["mesh"]["f@5mm"] == 1.0
    # The 16 px mask of a 64 px crop warped back to the 320x240 image: coarse but close.
    assert report["mask"]["mask_iou"] > 0.7 and report["mask"]["mask_miou"] > 0.85


def test_evaluate_report_of_an_untrained_model(setup) -> None:
    folder, cfg, model = setup
    report = evaluate(model, cfg, [folder.parent], max_samples=3, batch_size=3)
    table = report["datasets"]["handmade"]
    assert table["rows"] == 3 and table["split"] == "all"
    assert set(table) >= {"heatmap", "mesh", "mask", "silhouette"}
    assert 0.0 <= table["heatmap"]["pck@0.1"] <= 1.0
    assert report["overall"]["rows"] == 3
    assert json_safe({"x": float("nan")}) == {"x": None}
    assert subset_indices(10, 3).tolist() == [0, 4, 9] and len(subset_indices(10, 0)) == 10


def test_predict_images_maps_back_to_the_image(setup) -> None:
    folder, cfg, model = setup
    records = HandDataset(folder)
    images = [decode(records[i].image_bytes) for i in range(2)]
    boxes = [records[i].bbox for i in range(2)]
    right = predict_images(model, cfg, images, boxes, sides="right")
    auto = predict_images(model, cfg, images, boxes)
    assert [p.image_index for p in right] == [0, 1] and all(p.hand_side == "right" for p in right)
    assert all(p.hand_side in ("left", "right") for p in auto)
    first = right[0]
    assert first.keypoints_2d.shape == (21, 2) and first.mask.shape == images[0].shape[:2]
    assert first.vertices.shape[1] == 3 and first.mano_pose.shape == (48,)
    assert 0.0 <= first.scores["consistency"] <= 1.0
    # A left hand given as left is the mirror image of the same crop given as right: the crop
    # affines differ by the flip, and the predicted 2D lands inside the crop either way (a crop
    # turned upright: inside the circle through its corners).
    left = predict_images(model, cfg, images[:1], boxes[:1], sides="left")[0]
    assert not np.allclose(left.crop_affine, first.crop_affine)
    x, y, w, h = boxes[0]
    side = max(w, h) * (1 + 2 * cfg.data.margin)
    for p in (first, left):
        centre = np.array([x + w / 2, y + h / 2])
        assert (np.linalg.norm(p.keypoints_2d - centre, axis=1) <= side / 2 * np.sqrt(2) + 1).all()


def test_a_split_the_folder_lacks_is_named_with_those_it_has(setup) -> None:  # noqa: ANN001
    from hiu_data.errors import HiuError

    folder, cfg, model = setup
    with pytest.raises(HiuError, match=r"no rows in split 'nosuch' \(it has: .*; choose one with --split\)"):
        evaluate(model, cfg, [folder], split="nosuch")


def _strict_json(text: str) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    doc = json.loads(text, parse_constant=refuse)
    assert isinstance(doc, dict)
    return doc


def test_eval_of_datasets_of_different_kinds(setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Full labels, 2D only (no mask, a head size: CMU-like) and unlabeled: each dataset shows the
    metrics its labels allow, ``overall`` pools the hands, and ``--json`` is one strict object."""
    from hiu_cli.main import main
    from hiu_data.io.parquet import write_dataset
    from hiu_model.checkpoint import save_checkpoint
    from tests.targets.handmade import make_hand

    _, cfg, model = setup
    save_checkpoint(tmp_path / "run", 1, model, cfg.to_dict())
    twod = [make_hand(40 + i, labels="2d", dataset="twod") for i in range(2)]
    for sample in twod:
        sample.mask, sample.extras = None, {"head_size": 60.0}
    folders = [write_hands(tmp_path, 4, seed=7, dataset="full"), write_dataset(twod, tmp_path, "twod"),
               write_hands(tmp_path, 2, seed=8, dataset="unlabeled", labels="none")]
    assert main(["eval", str(tmp_path / "run"), *map(str, folders), "--json", "--device", "cpu"]) == 0
    doc = _strict_json(capsys.readouterr().out)
    full, two, none = (doc["datasets"][name] for name in ("full", "twod", "unlabeled"))
    assert [full["rows"], two["rows"], none["rows"]] == [4, 2, 2]
    assert {"heatmap", "mesh", "mask", "silhouette"} <= set(full) and "pckh@0.7" not in full["heatmap"]
    assert "mpjpe_mm" in full["mesh"] and "pa_mpvpe_mm" in full["mesh"]
    # 2D only: no 3D, vertex or mask numbers (not 0, not null); PCKh from its head size
    assert "mask" not in two and "silhouette" not in two and "pckh@0.7" in two["heatmap"]
    assert not {"mpjpe_mm", "pa_mpjpe_mm", "pa_mpvpe_mm", "f@5mm"} & set(two["mesh"])
    # no labels: no metric at all
    assert not {"heatmap", "mesh", "mask", "silhouette"} & set(none)

    overall = doc["overall"]
    assert overall["rows"] == 8
    # pooled over the labelled joints (21 per hand here), not the mean of the two datasets
    for branch in ("heatmap", "mesh"):
        for metric in ("pck@0.2", "epe_px"):
            pooled = (4 * full[branch][metric] + 2 * two[branch][metric]) / 6
            assert overall[branch][metric] == pytest.approx(pooled), (branch, metric)
    # a metric only some datasets have is pooled over those
    assert overall["mesh"]["mpjpe_mm"] == pytest.approx(full["mesh"]["mpjpe_mm"])
    assert overall["mask"] == pytest.approx(full["mask"])
    assert overall["heatmap"]["pckh@0.7"] == pytest.approx(two["heatmap"]["pckh@0.7"])

    assert main(["eval", str(tmp_path / "run"), *map(str, folders), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "nan" not in table.lower() and "overall" in table
    # the tables' reader learns which hand model the mesh numbers come from, as --json says
    assert f"{doc['checkpoint']['hand_model']['name']} hand model" in table


def test_the_tables_keep_long_dataset_names_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A report redirected to a file (not a terminal: 80 columns by default) names every dataset
    and metric in full."""
    from hiu_cli.evaluate import print_tables

    metrics = {"pck@0.05": 0.5, "pck@0.1": 0.6, "pck@0.2": 0.7, "auc_0_30px": 0.65, "epe_px": 12.5}
    datasets = {name: {"split": "test", "rows": 3, "heatmap": metrics, "mesh": metrics}
                for name in ("interhand26m", "hiu_data_hands")}
    print_tables({"datasets": datasets, "overall": {"rows": 6, "heatmap": metrics, "mesh": metrics}, "protocol": {}})
    out = capsys.readouterr().out
    assert "interhand26m" in out and "hiu_data_hands" in out and "auc_0_30px" in out and "pck@0.05" in out
