"""Checkpoints of a training run: save atomically, find, and load with clear errors.

A run folder holds::

    RUN_DIR/config.yaml                     the resolved configuration of the run
    RUN_DIR/metrics.csv                     step, time, tag, value (see hiu_model.train)
    RUN_DIR/best.json                       the checkpoint with the best validation metric
    RUN_DIR/checkpoints/step-000500/
        model.safetensors                   the network's weights (no pickle)
        config.json                         configuration, hand model and schema used, step
        train_state.pt                      optimizer, schedule, scaler, sampler position;
                                            read with ``torch.load(weights_only=True)``

A checkpoint folder is written under a temporary name and renamed when complete, so a run
killed while saving leaves the previous checkpoints intact and never a half-written one.

``load_checkpoint`` accepts a checkpoint folder or a run folder. In a run folder it takes the
checkpoint named in ``best.json`` when validation ran and that checkpoint still exists, else
the latest one (``which`` chooses explicitly). A missing, truncated or mismatched file raises
:class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from hiu_data.errors import HiuError, OutputExistsError

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"
BEST_FILE = "best.json"
RUN_CONFIG_FILE = "config.yaml"
FORMAT = "hiu-checkpoint"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(HiuError):
    """A checkpoint is missing, incomplete, corrupt, or does not fit this model."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``RUN_DIR/checkpoints/step-XXXXXX`` for a step number."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:06d}"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel (or compiled) wrapper."""
    while hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module):
        model = model.module  # type: ignore[assignment]
    return getattr(model, "_orig_mod", model)


def hand_model_info(model: nn.Module) -> dict[str, Any]:
    """Name, kind and size of the hand model a network uses (recorded in every checkpoint)."""
    hand = getattr(unwrap(model), "hand_model", None)
    if hand is None:
        return {}
    faces = getattr(hand, "faces", None)
    return {
        "name": str(getattr(hand, "name", type(hand).__name__)),
        "num_verts": int(getattr(hand, "num_verts", -1)),
        "num_faces": int(faces.shape[0]) if faces is not None else -1,
    }


def schema_info() -> dict[str, Any]:
    """The data schema and skeleton a checkpoint's outputs follow."""
    from hiu_data.schema import SCHEMA_VERSION
    from hiu_data.skeleton import NUM_JOINTS, SKELETON_NAME

    return {"version": SCHEMA_VERSION, "skeleton": SKELETON_NAME, "num_joints": NUM_JOINTS}


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, config: dict[str, Any],
                    train_state: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                    keep_last: int | None = None, protect: tuple[int, ...] = ()) -> Path:
    """Write ``RUN_DIR/checkpoints/step-XXXXXX/`` atomically and return its path.

    Args:
        run_dir: the run folder.
        step: optimizer steps taken so far (the checkpoint resumes at this step).
        model: the network (a DDP wrapper is unwrapped).
        config: ``Config.to_dict()`` of the run.
        train_state: optimizer / schedule / sampler state; tensors, numbers, strings, lists,
            tuples and dicts only (it is read back with ``weights_only=True``).
        extra: more JSON-serialisable fields for ``config.json`` (e.g. metrics at this step).
        keep_last: delete older ``step-*`` folders beyond this many (never those in
            ``protect``, e.g. the best one).
    """
    from safetensors.torch import save_model

    from hiu_data.io.manifest import staged_folder, tool_version

    final = checkpoint_dir(run_dir, step)
    with staged_folder(final) as tmp:
        net = unwrap(model)
        save_model(net, str(tmp / MODEL_FILE), force_contiguous=True,  # channels-last weights
                   metadata={"format": FORMAT, "step": str(step)})
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "step": int(step),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tool_version": tool_version(), "hand_model": hand_model_info(net), "schema": schema_info(),
            "config": config, **(extra or {}),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        if train_state is not None:
            torch.save(train_state, tmp / STATE_FILE)
    if keep_last is not None and keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            if _step_of(old) not in protect:
                shutil.rmtree(old, ignore_errors=True)
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _step_of(folder: Path) -> int:
    match = _STEP_DIR.match(folder.name)
    return int(match.group(1)) if match else -1


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest step first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / MODEL_FILE).exists()]
    return sorted(found, key=_step_of)


def check_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint a run in ``run_dir`` resumes from (None for a fresh run).

    Raises:
        HiuError: ``resume`` and the folder holds no checkpoint.
        OutputExistsError: not ``resume`` and the folder holds a run, without ``overwrite``.
    """
    run_dir = Path(run_dir)
    existing = list_checkpoints(run_dir)
    if resume:
        if not existing:
            raise HiuError(f"{run_dir}: nothing to resume (no {CHECKPOINTS_DIR}/step-*/ with weights)")
        return existing[-1]
    if existing and not overwrite:
        raise OutputExistsError(f"{run_dir}: holds a run; pass --resume to continue it or --overwrite to start over")
    if (run_dir / "metrics.csv").exists() and not overwrite:
        # --resume cannot help here: the run stopped before its first checkpoint.
        raise OutputExistsError(f"{run_dir}: holds a run that stopped before its first checkpoint (nothing to "
                                "resume); pass --overwrite to start over")
    return None


def start_run_dir(run_dir: Path, config: dict[str, Any]) -> None:
    """Empty the run folder of an earlier run (``--overwrite``) and write the run's config.

    Called by the main process only, after every process has checked the folder
    (:func:`check_run_dir`)."""
    for name in (CHECKPOINTS_DIR, "tensorboard"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in ("metrics.csv", BEST_FILE):
        (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))


def write_best(run_dir: str | Path, step: int, metric: str, value: float) -> None:
    """Record the best checkpoint of a run (``best.json``, replaced atomically)."""
    path = Path(run_dir) / BEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"step": int(step), "metric": metric, "value": float(value),
                               "checkpoint": str(checkpoint_dir(".", step))}))
    os.replace(tmp, path)


def read_best(run_dir: str | Path) -> dict[str, Any] | None:
    """``best.json`` of a run, or None when validation never ran."""
    path = Path(run_dir) / BEST_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"unreadable ({e})") from e


def resolve_checkpoint(path: str | Path, which: str = "auto") -> Path:
    """The checkpoint folder meant by ``path`` (a checkpoint folder or a run folder).

    Args:
        which: ``auto`` (best if recorded, else latest), ``best`` or ``latest``; only used
            for run folders.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "not found")
    if (path / CONFIG_FILE).exists() or (path / MODEL_FILE).exists():
        return path
    if which not in ("auto", "best", "latest"):
        raise CheckpointError(path, f"unknown checkpoint choice {which!r} (auto, best, latest)")
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise CheckpointError(path, f"neither a checkpoint folder ({MODEL_FILE} + {CONFIG_FILE}) nor a run "
                                    f"folder with {CHECKPOINTS_DIR}/step-*/; {_what_to_pass(path)}")
    if which in ("auto", "best"):
        best = read_best(path)
        if best is not None and checkpoint_dir(path, int(best["step"])).exists():
            return checkpoint_dir(path, int(best["step"]))
        if which == "best":
            raise CheckpointError(path, f"no {BEST_FILE}: validation never ran in this run")
    return checkpoints[-1]


def _what_to_pass(path: Path) -> str:
    """The hint of a folder that is no checkpoint: the usual slips are the ``runs/`` folder
    above the runs, a run's ``checkpoints/`` folder, and arguments in the wrong order."""
    if path.is_file() and (path.parent / CONFIG_FILE).is_file():
        return f"pass the checkpoint folder {path.parent}"
    if path.name == CHECKPOINTS_DIR and list_checkpoints(path.parent):
        return f"pass the run folder {path.parent}"
    runs = [p for p in sorted(path.iterdir()) if p.is_dir() and list_checkpoints(p)] if path.is_dir() else []
    if runs:
        shown = ", ".join(str(p) for p in runs[:3]) + (", ..." if len(runs) > 3 else "")
        return f"it holds runs: pass one of them ({shown})"
    if (path / "manifest.json").is_file():
        return "it is a converted dataset: the checkpoint or run folder comes first"
    return "the first argument is a run folder (hiu-data train --out) or one of its checkpoints/step-*/"


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder."""
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(path, "missing (incomplete checkpoint)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"corrupt JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(path, f"not a hiu checkpoint config (expected format {FORMAT!r} and a 'config' key)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer hiu (checkpoint format {meta['format_version']}); upgrade hiu")
    return meta


def config_from_dict(values: dict[str, Any], source: str | Path = "config") -> Any:
    """A :class:`hiu_model.config.Config` from its ``to_dict()`` form.

    Goes through ``load_config`` so that a stored configuration is checked exactly like a
    YAML file a user writes (unknown keys are errors).
    """
    from hiu_model.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        try:
            # Paths are stored absolute; relative ones (older runs) meant the current folder.
            return load_config(path, None, [], relative_to=Path.cwd(), stored=True)
        except HiuError as e:
            raise CheckpointError(source, f"stored configuration does not load: {e}") from e


def load_weights(model: nn.Module, folder: str | Path, device: str | torch.device = "cpu") -> None:
    """Load ``model.safetensors`` of a checkpoint folder into ``model`` (strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / MODEL_FILE
    if not path.exists():
        raise CheckpointError(path, "missing (incomplete checkpoint)")
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"corrupt or truncated weights file ({str(e).splitlines()[0]})") from e
    net = unwrap(model)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    # save_model drops duplicates of shared tensors; those keys may be missing legitimately.
    missing = [k for k in missing if not any(expected[k].data_ptr() == expected[o].data_ptr()
                                               for o in expected if o in state)]
    if missing or unexpected:
        raise CheckpointError(path, f"weights do not fit this model (missing {missing[:3]}, unexpected "
                                    f"{unexpected[:3]}); was it saved by another model configuration?")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(path, f"weight {key} has shape {tuple(tensor.shape)}, the model expects "
                                        f"{tuple(expected[key].shape)}")
    net.load_state_dict(state, strict=False)


def load_train_state(folder: str | Path) -> dict[str, Any]:
    """``train_state.pt`` of a checkpoint folder, read with ``weights_only=True``."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        raise CheckpointError(path, "missing: this checkpoint cannot be resumed (weights only)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors for damaged files alike
        raise CheckpointError(path, f"corrupt or unsafe training state ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(path, "not a hiu training state (no 'step')")
    return state


def load_checkpoint(path: str | Path, which: str = "auto", device: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """Build the network of a checkpoint and load its weights.

    Args:
        path: a checkpoint folder or a run folder (see :func:`resolve_checkpoint`).
        which: ``auto``, ``best`` or ``latest`` for run folders.
        device: where the model is put.
    Returns:
        ``(model, cfg, info)``: the :class:`hiu_model.model.HIUDMTL` in eval mode, its
        :class:`hiu_model.config.Config`, and ``info`` with ``path`` (checkpoint folder),
        ``step``, ``hand_model``, ``schema``, ``sha256`` (of the weights file, for
        ``label_source = pseudo:<sha>``) and the stored metrics.
    """
    from hiu_data.io.parquet import sha256_file
    from hiu_model.distributed import pick_device
    from hiu_model.model import HIUDMTL

    device = pick_device(device) if isinstance(device, str) else device
    folder = resolve_checkpoint(path, which)
    meta = read_meta(folder)
    cfg = config_from_dict(meta["config"], folder / CONFIG_FILE)
    for key, kind in (("schema", dict), ("hand_model", dict), ("step", int), ("metrics", dict)):
        if meta.get(key) is not None and (not isinstance(meta[key], kind) or isinstance(meta[key], bool)):
            raise CheckpointError(folder / CONFIG_FILE, f"{key!r} must be a JSON {kind.__name__}, not {meta[key]!r}")
    schema = meta.get("schema", {})
    if schema and schema.get("num_joints") != schema_info()["num_joints"]:
        raise CheckpointError(folder / CONFIG_FILE, f"trained for {schema.get('num_joints')} joints, this hiu uses "
                                                     f"{schema_info()['num_joints']}")
    model = HIUDMTL(cfg.model)
    trained_hand = meta.get("hand_model", {})
    here = hand_model_info(model)
    here_names = {here.get("name"), *getattr(model.hand_model, "legacy_names", ())}
    if trained_hand and here and trained_hand.get("name") not in here_names:
        raise CheckpointError(folder / CONFIG_FILE, f"trained with hand model {trained_hand.get('name')!r} but "
                                                     f"{here.get('name')!r} is in use here; make the same hand model "
                                                     "available (see `hiu-data mano import`)")
    load_weights(model, folder, device="cpu")
    model.to(device).eval()
    info = {
        "path": str(folder), "step": int(meta.get("step", -1)), "hand_model": trained_hand, "schema": schema,
        "sha256": sha256_file(folder / MODEL_FILE), "metrics": meta.get("metrics", {}),
        "tool_version": meta.get("tool_version"),
    }
    log.info("loaded %s (step %d)", folder, info["step"])
    return model, cfg, info
