"""``hiu-data train``: train HIU-DMTL from a config file and/or flags into a run folder."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hiu_cli._common import Overwrite, console, other_process
from hiu_data.errors import HiuError, ReportedElsewhere

_SHOWN = ("loss", "heatmap", "mask", "pof", "reprojection")


def flag_overrides(data: list[Path] | None, unlabeled: list[Path] | None, val: list[Path] | None, steps: int | None,
                   batch_size: int | None, lr: float | None, device: str | None, workers: int | None,
                   minutes: float | None = None) -> list[str]:
    """``--set`` strings equivalent to the convenience flags (flags win over the config file)."""
    out = []
    for key, paths in (("datasets", data), ("unlabeled", unlabeled), ("val", val)):
        if paths:
            out.append(f"train.{key}={json.dumps([str(p) for p in paths])}")
    for key, value in (("steps", steps), ("batch_size", batch_size), ("lr", lr), ("device", device),
                       ("num_workers", workers), ("max_minutes", minutes)):
        if value is not None:
            out.append(f"train.{key}={json.dumps(value)}")
    return out


def _progress_printer(progress: Progress | None, task: Any, log_every: int):
    def update(step: int, total: int, values: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {values[k]:.4g}" for k in _SHOWN if k in values)
        if progress is not None:
            progress.update(task, completed=step, total=total, losses=shown)
        elif step % log_every == 0 or step == total:
            console.print(f"step {step}/{total}  {shown}  lr {values.get('lr', float('nan')):.3g}", markup=False)
    return update


def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config: preset: and sections model, data, loss, train (example: configs/mix.yaml); relative paths in it are relative to its folder.", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Start from a preset: tiny (2 CPU cores: tiny-bf16 with AMX or a GPU, else tiny-fp32), tiny-bf16, tiny-fp32 or paper (default: the config file's preset, else paper).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a value: section.key=value (repeatable).")] = None,
    data: Annotated[list[Path] | None, typer.Option("--data", help="Labeled converted dataset folder (repeatable); replaces the config's train.datasets.")] = None,
    unlabeled: Annotated[list[Path] | None, typer.Option("--unlabeled", help="A folder of unlabeled images (searched recursively; its detections.json boxes when present) or converted folder, seen only by the self-supervised losses (repeatable); replaces the config's train.unlabeled.")] = None,
    val: Annotated[list[Path] | None, typer.Option("--val", help="Validation dataset folder (repeatable; replaces the config's train.val); the best step is recorded in best.json.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Optimizer steps (default: the preset's or config's train.steps).")] = None,
    minutes: Annotated[float | None, typer.Option(
        "--minutes", "-m", min=0.01, help="Train for about this long: stop at M minutes and, without --steps, size "
        "the schedule to what M minutes hold on this machine (a few steps are timed first; the timing counts "
        "within M), then re-size it to the run's own pace as it goes. With --resume: the time limit of the "
        "whole run.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", min=1, help="Training samples per step and process (default: train.batch_size).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default: train.lr).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Torch device: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N (default: train.device, which is auto).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=0, help="Data-loader worker processes per training process (default: train.num_workers).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<date-time>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint.")] = False,
    overwrite: Overwrite = False,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the configuration these arguments give (preset, then the file, then the flags; "
        "every field, paths absolute) as YAML on stdout and exit without training; a start for a config file.")] = False,
) -> None:
    """Train HIU-DMTL; checkpoints, metrics.csv and validation land in the run folder.

    Example: hiu-data train --preset tiny --data synth/synth --steps 3000 --out runs/tiny

    A time budget: hiu-data train --preset tiny --data synth/synth --minutes 15 --out runs/tiny

    From a config file (see configs/mix.yaml): hiu-data train mix.yaml --out runs/mix

    Every value a run would use: hiu-data train mix.yaml --steps 3000 --print-config

    Several processes: torchrun --nproc_per_node 2 $(which hiu-data) train cfg.yaml --out runs/a
    """
    from hiu_model.checkpoint import RUN_CONFIG_FILE, read_best
    from hiu_model.config import load_config
    from hiu_model.train import train as train_model

    started = time.perf_counter()  # --minutes counts from here: the timing is part of the budget
    main = not other_process()
    if out is None:
        if resume:
            raise _usage_error("--resume needs --out RUN_DIR", "--resume")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Each process would pick its own time stamp: the run folder must be named.
            raise _usage_error("several processes (torchrun) need --out RUN_DIR", "--out")
        out = Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base, relative_to, stored = config, None, False
    if resume and base is None and (out / RUN_CONFIG_FILE).exists():
        # The run's own configuration, then the flags on top. Its paths are absolute; a relative
        # one (a run started before they were stored absolute) meant the current folder then.
        base, relative_to, stored = out / RUN_CONFIG_FILE, Path.cwd(), True
    try:
        cfg = load_config(base, preset, [*(overrides or []), *flag_overrides(data, unlabeled, val, steps, batch_size,
                                                                            lr, device, workers, minutes)],
                          relative_to=relative_to, stored=stored)
        if print_config:
            if main:
                typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None), nl=False)
            return
        if config is not None and not cfg.train.datasets and not cfg.train.unlabeled:
            raise HiuError(f"{config}: no training data: train.datasets is empty; list converted dataset folders "
                           "there or pass --data DIR")
    except HiuError as e:
        if not main:  # the same arguments and files give rank 0 the same error, which it prints
            raise ReportedElsewhere(str(e)) from None
        raise
    if main and base is not None:
        _note_replaced_sources(base, {"--data": data, "--unlabeled": unlabeled, "--val": val})
    # Said once the run has started (after the checks), so that a refusal stays one line.
    preset_note = _resolved_preset_note(preset, base, cfg.train.device) if main and not resume else None
    # An explicit step count is never re-sized; without one, a resumed run goes on with its own.
    explicit = steps is not None or any(o.partition("=")[0].strip() == "train.steps" for o in overrides or [])
    from_budget = not explicit and (minutes is not None or resume)
    if from_budget and not resume:
        cfg.train.steps, cfg.train.max_minutes = _steps_for(cfg, out, overwrite, minutes, started, main)
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}")]
    live = main and console.is_terminal
    with Progress(*columns, console=console, disable=not live) as progress:
        task = progress.add_task("train", total=cfg.train.steps, losses="")
        printer = _progress_printer(progress if live else None, task, cfg.train.log_every) if main else None
        reached: list[int] = []

        def update(step: int, total: int, values: dict[str, float]) -> None:
            reached[:] = [step]
            if printer is not None:
                printer(step, total, values)

        def note(text: str) -> None:
            console.print(text, markup=False)

        def started(folder: Path) -> None:
            note(f"run folder {folder}")
            if preset_note:
                note(preset_note)

        run = train_model(cfg, out, resume=resume, progress=update if main else None, overwrite=overwrite,
                          steps_from_budget=from_budget, notify=note if main else None,
                          on_start=started if main else None)
    if main:
        if reached and reached[0] < cfg.train.steps:
            # Asked for (--minutes or train.max_minutes): the expected end, said plainly, not warned,
            # and in the terms it was asked in (a budget's train.max_minutes is what the timing left).
            limit = (f"--minutes {minutes:g}, the timing included" if from_budget and not resume
                     else f"train.max_minutes={cfg.train.max_minutes:g}")
            console.print(f"stopped at the time limit after step {reached[0]} of {cfg.train.steps} ({limit}), "
                          "with a checkpoint", markup=False)
        best = read_best(run)
        if best:
            console.print(f"best {best['metric']} = {best['value']:.4f} at step {best['step']}", markup=False)
        console.print(f"done: {run}", markup=False)


def _steps_for(cfg: Any, out: Path, overwrite: bool, minutes: float, started: float, main: bool) -> tuple[int, float]:
    """The schedule's length and training time for a time budget: the steps of ``cfg`` that
    ``minutes`` hold here once the time since ``started`` (``time.perf_counter``; the timing and
    the checks) is taken off, and the minutes left for them. Under ``torchrun`` every process
    times its own steps; training then takes the smallest estimate (``main``: the one that prints)."""
    from hiu_model import budget
    from hiu_model.schedule import RESIZE_AT
    from hiu_model.checkpoint import check_run_dir
    from hiu_model.train_data import check_training_data

    # What training would refuse is refused before the timing, not after it.
    check_run_dir(out, resume=False, overwrite=overwrite)
    check_training_data(cfg)
    if main:
        console.print(f"timing a few steps to fit the schedule into {minutes:g} minutes", markup=False)
    fit = budget.fit_budget(cfg, minutes, cfg.train.batch_size, spent_seconds=time.perf_counter() - started)
    if main and fit.used_up:
        # Said in the user's own terms: the limit the run then stops at (train.max_minutes, a
        # token 1e-6) is not a number they gave.
        console.print(f"warning: timing a step took all of --minutes {minutes:g} ({60 * minutes:.1f} s): "
                      f"{fit.timing_seconds:.0f} s here, then about {fit.step_seconds:.2g} s a step; the run trains "
                      f"one step, with a checkpoint, and stops; --minutes {fit.minutes_needed():g} or more trains "
                      f"{budget.MIN_STEPS} steps or more (or give --steps N)", markup=False)
    elif main:
        console.print(f"{fit.steps} steps of batch {cfg.train.batch_size} (train.steps) in the {fit.train_minutes:.1f} "
                      f"minutes left after {fit.timing_seconds:.0f} s of timing, re-sized to the measured pace at "
                      f"{' and '.join(f'{f:.0%}' for f in RESIZE_AT)} of them; the run stops then either way "
                      f"(train.max_minutes={fit.train_minutes:.4g})"
                      + ("; the processes start from the smallest estimate" if int(os.environ.get("WORLD_SIZE", "1")) > 1
                         else ""), markup=False)
    return fit.steps, fit.train_minutes


def _note_replaced_sources(path: Path, flags: dict[str, list[Path] | None]) -> None:
    """Say when a flag replaced a source list of the config file (flags replace, as every flag
    and ``--set`` do; extending a list is done in the file)."""
    from hiu_model.config_values import read_yaml_mapping

    section = read_yaml_mapping(path).get("train") or {}
    for (flag, given), key in zip(flags.items(), ("datasets", "unlabeled", "val")):
        listed = section.get(key) if isinstance(section, dict) else None
        if given and isinstance(listed, list) and listed:
            count = f"{len(listed)} source{'s' if len(listed) > 1 else ''}"
            console.print(f"note: {flag} replaces the {count} of train.{key} in {path}", markup=False)


def _resolved_preset_note(preset: str | None, config_file: Path | None, device: str) -> str | None:
    """Which network ``tiny`` (from ``--preset`` or the config file) stands for on this machine
    and ``device`` (``train.device``), in one line; None for the other presets."""
    import torch

    from hiu_model.config_values import read_yaml_mapping
    from hiu_model.presets import resolved_name

    if preset is None and config_file is not None:
        preset = read_yaml_mapping(config_file).get("preset")
    if preset != "tiny":
        return None
    name = resolved_name(preset, device)
    if name == "tiny-bf16":
        why = "this machine has bf16 matrix hardware"
    elif device == "cpu" and torch.cuda.is_available():
        why = "training on the CPU (train.device cpu), which multiplies matrices in float32: no AMX tiles"
    else:
        why = "this machine multiplies matrices in float32: no CUDA device, no AMX tiles"
    return f"preset tiny: {name} ({why})"


def _usage_error(message: str, param_hint: str) -> Exception:
    """A usage error every process of a ``torchrun`` group meets alike: rank 0 prints it, the
    others only exit with its status (2), as for any usage error (:mod:`hiu_cli.main`)."""
    return typer.BadParameter(message, param_hint=param_hint)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
