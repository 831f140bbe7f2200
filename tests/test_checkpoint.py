"""Checkpoint files: atomic save, choice of checkpoint in a run folder, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hiu_data.errors import HiuError
from hiu_model import checkpoint as ckpt


class _Net(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.a = nn.Linear(3, width)
        self.b = nn.BatchNorm1d(width)


def _train_state(net: nn.Module, step: int) -> dict:
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss = net.b(net.a(torch.randn(4, 3))).square().mean()
    loss.backward()
    opt.step()
    return {"step": step, "optimizer": opt.state_dict(), "numbers": [1, 2.5, "x"], "nested": {"t": torch.arange(3)}}


def test_round_trip_and_run_folder_choice(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _Net()
    state = _train_state(net, 5)
    first = ckpt.save_checkpoint(tmp_path, 5, net, {"model": {"width": 4}}, state, extra={"metrics": {"x": 1.0}})
    second = ckpt.save_checkpoint(tmp_path, 10, net, {"model": {"width": 4}}, state)
    assert first.name == "step-000005" and (first / "model.safetensors").exists()
    assert ckpt.resolve_checkpoint(tmp_path) == second            # latest without best.json
    ckpt.write_best(tmp_path, 5, "pck@0.1", 0.9)
    assert ckpt.resolve_checkpoint(tmp_path) == first             # best once recorded
    assert ckpt.resolve_checkpoint(tmp_path, "latest") == second
    assert ckpt.resolve_checkpoint(second) == second

    other = _Net()
    ckpt.load_weights(other, first)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value, rtol=0, atol=0)
    loaded = ckpt.load_train_state(first)
    assert loaded["step"] == 5 and loaded["numbers"] == [1, 2.5, "x"]
    assert ckpt.read_meta(first)["metrics"] == {"x": 1.0}
    assert ckpt.read_meta(first)["schema"]["num_joints"] == 21

    # keep_last deletes old checkpoints but never the protected (best) one
    ckpt.save_checkpoint(tmp_path, 15, net, {}, state, keep_last=1, protect=(5,))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000005", "step-000015"]
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folders left behind


def test_corrupt_files_give_clear_errors(tmp_path: Path) -> None:
    net = _Net()
    folder = ckpt.save_checkpoint(tmp_path, 1, net, {}, _train_state(net, 1))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ckpt.CheckpointError, match=r"model\.safetensors: corrupt or truncated"):
        ckpt.load_weights(_Net(), folder)

    state = folder / "train_state.pt"
    state.write_bytes(b"not a zip file at all")
    with pytest.raises(ckpt.CheckpointError, match=r"train_state\.pt: corrupt"):
        ckpt.load_train_state(folder)

    (folder / "config.json").write_text("{broken")
    with pytest.raises(ckpt.CheckpointError, match=r"config\.json: corrupt JSON"):
        ckpt.read_meta(folder)
    (folder / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ckpt.CheckpointError, match="not a hiu checkpoint"):
        ckpt.read_meta(folder)



@pytest.mark.parametrize("key, value", [("step", "abc"), ("hand_model", "x"), ("schema", [1])])
def test_checkpoint_fields_of_the_wrong_type_are_named(tmp_path: Path, key: str, value: object) -> None:
    from hiu_model.config import load_config
    from hiu_model.model import HIUDMTL

    cfg = load_config(None, "tiny", ["model.input_size=32", "model.num_stacks=1"])
    folder = ckpt.save_checkpoint(tmp_path, 1, HIUDMTL(cfg.model), cfg.to_dict())
    meta = json.loads((folder / "config.json").read_text())
    meta[key] = value
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match=rf"config\.json: '{key}' must be a JSON"):
        ckpt.load_checkpoint(folder)
    with pytest.raises(HiuError, match="device 'bogus' is not a torch device"):
        ckpt.load_checkpoint(tmp_path, device="bogus")

def test_unsafe_train_state_is_refused(tmp_path: Path) -> None:
    net = _Net()
    folder = ckpt.save_checkpoint(tmp_path, 1, net, {}, {"step": 1})
    # An arbitrary object needs full unpickling; weights_only refuses it.
    torch.save({"step": 1, "obj": _Net()}, folder / "train_state.pt")
    with pytest.raises(ckpt.CheckpointError, match="corrupt or unsafe"):
        ckpt.load_train_state(folder)


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    folder = ckpt.save_checkpoint(tmp_path, 1, _Net(4), {}, None)
    with pytest.raises(ckpt.CheckpointError, match="has shape"):
        ckpt.load_weights(_Net(8), folder)
    with pytest.raises(ckpt.CheckpointError, match="cannot be resumed"):
        ckpt.load_train_state(folder)
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(ckpt.CheckpointError, match="neither a checkpoint folder"):
        ckpt.resolve_checkpoint(tmp_path / "checkpoints")


def test_a_run_stored_before_first_block_zeros_existed_loads_with_the_zeros(tmp_path: Path) -> None:
    from hiu_model.config import load_config
    from hiu_model.model import HIUDMTL

    cfg = load_config(None, "tiny", ["model.first_block_zeros=true", "model.num_stacks=1"])
    torch.manual_seed(0)
    old = HIUDMTL(cfg.model).eval()
    stored = cfg.to_dict()
    del stored["model"]["first_block_zeros"]  # what runs stored before the option wrote
    folder = ckpt.save_checkpoint(tmp_path / "old", 1, old, stored)
    loaded, loaded_cfg, _ = ckpt.load_checkpoint(folder)
    assert loaded_cfg.model.first_block_zeros is True
    image = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded.last_heatmaps(image), old.last_heatmaps(image), rtol=0, atol=0)

    # A configuration written today says what it trained with, whichever way.
    new_cfg = load_config(None, "tiny", ["model.num_stacks=1"])
    folder = ckpt.save_checkpoint(tmp_path / "new", 1, HIUDMTL(new_cfg.model), new_cfg.to_dict())
    assert ckpt.load_checkpoint(folder)[1].model.first_block_zeros is False
    # Only stored configurations take the old behaviour; a user's file without the key gets today's.
    (tmp_path / "mine.yaml").write_text("model:\n  num_stacks: 1\n")
    assert load_config(tmp_path / "mine.yaml", "tiny").model.first_block_zeros is False
    assert load_config(tmp_path / "mine.yaml", "tiny", stored=True).model.first_block_zeros is True
