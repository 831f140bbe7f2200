"""Training of HIU-DMTL: mixed datasets, AdamW or Muon with a schedule, checkpoints, exact resume, DDP.

``train(cfg, out)`` runs ``cfg.train.steps`` optimizer steps and leaves a run folder (layout
in :mod:`hiu_model.checkpoint`). One code path serves one CPU, one GPU and ``torchrun``
(``torchrun --nproc_per_node N $(which hiu-data) train ...``): every process builds the same
model from the same seed, DDP averages the gradients (gloo on CPU, NCCL on GPU), and each rank
reads its own positions of one shared sampling sequence (:class:`hiu_model.sampling.MixedSampler`).
Rank 0 logs, evaluates and saves. However a run ends (its last step, the time limit
``max_minutes``, a stop signal) it logs the losses of its last steps; at the last step and the
time limit it also validates the weights it saves last (``best.json``), a signal skips that.

Data: ``cfg.train.datasets`` (labeled) and ``cfg.train.unlabeled`` are drawn with their
weights from one sequence; rows of unlabeled sources have every ``has_*`` flag cleared, so
only the self-supervised losses see them. An unlabeled source may be a plain image folder;
it is converted once into ``RUN_DIR/data/`` with the ``folder`` format (one row per image, or
per box of a ``detections.json`` beside the images). The batches are built in
:mod:`hiu_model.train_data`.

Determinism (CPU): the sampling sequence depends on (seed, epoch) only, augmentation on the
draw's key, and the torch generator is reseeded from (seed, step, rank) before every step
(dropout and any other random op). A checkpoint stores weights, optimizer, schedule (with its
plan) and scaler, so ``resume`` continues with exactly the batches and updates an uninterrupted
run would have made: the next loss is the same bit for bit on the CPU. That needs the run's number
of processes (their shares of the sequence and the global batch depend on it): another is refused.

Schedule (:mod:`hiu_model.schedule`): linear warm-up over ``warmup_steps`` (at most a tenth of
``steps``), then ``cosine`` decay to ``min_lr_ratio * lr`` at ``steps`` (or ``step``, ``constant``);
a total sized from ``max_minutes`` is re-sized to the measured pace. ``optimizer``: AdamW, or
Muon on the hidden weights (:mod:`hiu_model.optim`); weight decay on conv / linear weights only.
Mixed precision (``amp``): on a GPU bf16 where supported, else fp16 with a gradient scaler; on a
CPU with bf16 matrix units (AMX) bf16. A step whose gradient norm is not finite is skipped
(counted in ``train/skipped_steps``).
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from hiu_data.errors import HiuError
from hiu_model import checkpoint as ckpt
from hiu_model import distributed
from hiu_model.interrupt import TrainingInterrupted, stop_on_signals
from hiu_model.optim import make_optimizer
from hiu_model.run_log import LossWindow, RunLog
from hiu_model.schedule import Plan, Resizer, agree_budget, lr_factor
from hiu_model.train_data import build_training_data, check_training_data, check_val_sources, parse_sources

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]


def amp_dtype(cfg: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``cfg.amp`` on ``device`` (None: full precision).

    ``auto``: bf16 on a GPU that supports it, else fp16; on the CPU bf16 where the processor
    multiplies bf16 matrices in hardware (AMX tiles: 1.4-1.8x faster steps for ``tiny``,
    the same loss curve), else full precision. ``fp16`` is GPU-only.
    """
    if cfg.amp not in ("auto", "off", "bf16", "fp16"):
        raise HiuError(f"train.amp: {cfg.amp!r} is not auto, off, bf16 or fp16")
    if cfg.amp == "off":
        return None
    if device.type != "cuda":
        if cfg.amp == "fp16":
            raise HiuError("train.amp: fp16 needs a CUDA device; use bf16 or off on the CPU")
        return torch.bfloat16 if cfg.amp == "bf16" or distributed.cpu_has_bf16_matmul() else None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed torch (CPU and CUDA) for one step: random ops depend on (seed, step, rank) only."""
    torch.manual_seed((int(seed) * 1_000_003 + int(step) * 9_973 + int(rank)) % (2**63 - 1))


def silhouette_rows(labeled: torch.Tensor, samples: int) -> torch.Tensor | None:
    """Batch rows (n,) int64, ascending, whose silhouette a training step renders: every
    unlabeled row, then labeled rows in batch order up to ``samples`` rows in all; ``None`` (all
    rows) when ``samples`` is 0 or covers the batch. ``labeled``: (B,) 1 for labeled rows."""
    if samples <= 0 or samples >= labeled.numel():
        return None
    unlabeled = torch.nonzero(labeled == 0).squeeze(1)
    chosen = torch.nonzero(labeled != 0).squeeze(1)[:max(0, samples - unlabeled.numel())]
    return torch.cat([chosen, unlabeled]).sort().values


def _to_device(batch: dict[str, torch.Tensor], device: torch.device, num_labeled: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    labeled = (batch["source"] < num_labeled).float()
    for flag in ("has_2d", "has_3d", "has_mask", "has_mano"):
        batch[flag] = batch[flag] * labeled
    return batch, labeled


def _better(metric: str, value: float, best: float | None) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    lower = metric.endswith(("_px", "_mm"))
    return value < best if lower else value > best


def _restore(checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: torch.amp.GradScaler | None, info: distributed.DistInfo) -> dict[str, Any]:
    """Load a checkpoint's weights and optimizer, schedule and scaler states in place; return
    its train state (step, elapsed_s, best, skipped_steps, world_size).

    Raises:
        HiuError: the run trained with another number of processes than this one has.
    """
    state = ckpt.load_train_state(checkpoint)
    trained_with = int(state.get("world_size", info.world_size))
    if trained_with != info.world_size:
        # Each process reads its own positions of the sampling sequence and the global batch is
        # batch_size x processes: another count would continue with other batches and updates.
        how = "without torchrun" if trained_with == 1 else f"with torchrun --nproc_per_node {trained_with}"
        raise HiuError(f"{checkpoint}: the run trained with {trained_with} process(es) and this resume has "
                       f"{info.world_size}; resume it {how} to continue it exactly")
    ckpt.load_weights(model, checkpoint, device=info.device)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # Another optimizer or parameter layout than the run's, or a damaged state file.
        raise ckpt.CheckpointError(checkpoint / ckpt.STATE_FILE,
                                   f"does not fit this run's optimizer and schedule ({type(e).__name__}: {e}); "
                                   "resume with the run's own settings (train.optimizer and the model)") from None
    log.info("resuming %s at step %d", checkpoint, state["step"])
    return state


def _update(net: nn.Module, batch: dict[str, torch.Tensor], labeled: torch.Tensor, cfg: Any,
            dtype: torch.dtype | None, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
            params: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, bool]:
    """One optimizer step on a batch: forward under autocast (``dtype``; None = float32),
    losses, backward, gradient clipping, update.

    Args:
        net: the model with its losses (:class:`hiu_model.losses.TrainingLoss`), or DDP around it.
        labeled: (B,) float, 1 for rows of labeled sources.
    Returns:
        the total loss (scalar), the weighted loss terms by name, the global gradient norm before
        clipping, and whether the weights were updated (False when the norm was not finite; with
        a gradient scaler the scaler decides and this is True).
    """
    tc = cfg.train
    device_type = batch["image"].device.type
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        total, terms = net(batch, labeled, silhouette_rows(labeled, tc.silhouette_samples))
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
    else:
        total.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else float("inf"))
    updated = True
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    elif torch.isfinite(norm):
        optimizer.step()
    else:
        updated = False
    optimizer.zero_grad(set_to_none=True)
    return total, terms, norm, updated


def train(cfg: Any, out: str | Path, resume: bool = False, progress: Progress | None = None,
          overwrite: bool = False, steps_from_budget: bool = False, notify: Callable[[str], None] | None = None,
          on_start: Callable[[Path], None] | None = None) -> Path:
    """Train ``cfg`` into the run folder ``out`` and return it.

    Args:
        cfg: :class:`hiu_model.config.Config`.
        out: the run folder (created; must not hold a run unless ``resume`` or ``overwrite``).
        resume: continue from the latest checkpoint in ``out``.
        progress: called on the main process after every step with ``(step, total_steps,
            latest logged scalars)``.
        overwrite: start over in a folder that holds a run.
        steps_from_budget: ``cfg.train.steps`` was sized from ``train.max_minutes``: re-size it to
            the measured pace (:mod:`hiu_model.schedule`; the final total ends in ``cfg.train.steps``).
            On resume: continue the checkpoint's schedule; False: ``cfg.train.steps`` is explicit.
        notify: called on the main process with a one-line note when the schedule is re-sized.
        on_start: called on the main process with the run folder once it is made (or found, on
            resume) and the training data are read: a run refused before then leaves no folder.
    Raises:
        HiuError: no data, bad sources, an existing run, nothing to resume.
        TrainingInterrupted: SIGINT or SIGTERM arrived; the run stopped after the current step,
            logged its last losses and saved a checkpoint there (:mod:`hiu_model.interrupt`).
    """
    from hiu_model.losses import TrainingLoss, unused_parameters_possible
    from hiu_model.model import HIUDMTL

    tc = cfg.train
    info = distributed.setup(tc.device)
    if steps_from_budget and not resume:
        agree_budget(tc, info)
    run_dir = Path(out)
    fresh = not run_dir.exists()
    batches: Any = None  # the training stream, whose loader workers are stopped on the way out
    wrapper: weakref.ReferenceType | None = None  # the DDP wrapper, gone before the process group
    agreed_end = False  # every process leaves together: the run's end, or a stop they agreed on
    try:
        # What every process checks alike (the run folder, the data, the checkpoint) comes before
        # the first write and is settled together, so that the error is printed once.
        with distributed.fail_together(info):
            resume_from = ckpt.check_run_dir(run_dir, resume, overwrite)
            val_sources = parse_sources(tc.val, None)
            check_val_sources(val_sources)  # now, not at the first evaluation hours later
            check_training_data(cfg)
            torch.manual_seed(tc.seed)
            model = HIUDMTL(cfg.model).to(info.device)
            memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
            model = model.to(memory_format=memory_format)
            optimizer = make_optimizer(model, tc, info.device)
            plan = Plan.of(tc, sized=steps_from_budget)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, tc, plan))
            dtype = amp_dtype(tc, info.device)
            scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
            state: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "best": None, "skipped_steps": 0}
            if resume_from is not None:
                state = _restore(resume_from, model, optimizer, scheduler, scaler, info)
                plan.restore(state.get("schedule"), tc, keep_total=steps_from_budget)
        if resume_from is None:
            if info.is_main:
                ckpt.start_run_dir(run_dir, cfg.to_dict())
            distributed.barrier(info)
        net: nn.Module = TrainingLoss(model, cfg.loss)
        if info.distributed:
            # Searching each step's graph for parameters without a gradient is needed only where
            # loss weights of 0 leave some (torch notes on every rank when it finds none).
            # static_graph is not used: it hooks its first step through the outputs as torch's
            # pytree sees them, and with the model's output dataclass it silently averaged no
            # gradient at all; a search that is missing fails loudly at the next step instead.
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                find_unused_parameters=unused_parameters_possible(cfg.model, cfg.loss))
            wrapper = weakref.ref(net)
        try:
            batches, num_labeled = build_training_data(cfg, run_dir, info)
        except HiuError:
            if fresh and info.is_main:  # bad data: leave no run folder behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if on_start is not None and info.is_main:
            on_start(run_dir)
        sizer = Resizer(plan, tc, batches, notify if info.is_main else None)
        logger = RunLog(run_dir, enabled=info.is_main, resume_step=state["step"] if resume_from else None)
        start = int(state["step"])
        if start >= tc.steps:
            log.warning("%s is at step %d of train.steps=%d: nothing to train (raise --steps to go on)",
                        run_dir, start, tc.steps)
        elapsed = float(state.get("elapsed_s", 0.0))
        best = state.get("best")
        skipped = int(state.get("skipped_steps", 0))
        params = [p for p in model.parameters() if p.requires_grad]
        window = LossWindow(logger, info, tc.batch_size * info.world_size, elapsed)
        last: dict[str, float] = {}
        step = start

        def save(step: int, metrics: dict[str, float] | None = None) -> None:
            train_state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict() if scaler is not None else None, "best": best,
                           "elapsed_s": elapsed, "skipped_steps": skipped, "world_size": info.world_size,
                           "schedule": plan.state_dict()}
            if info.is_main:
                ckpt.save_checkpoint(run_dir, step, model, cfg.to_dict(), train_state,
                                     extra={"metrics": metrics or {}}, keep_last=tc.keep_checkpoints,
                                     protect=(best["step"],) if best else ())
            distributed.barrier(info)

        def log_losses(step: int) -> None:
            nonlocal elapsed, tick, last
            now = time.perf_counter()
            elapsed += now - tick
            tick = now
            last = window.log(step, elapsed, {"lr": scheduler.get_last_lr()[0], "skipped_steps": float(skipped),
                                              "planned_steps": float(tc.steps)})

        def validate(step: int) -> dict[str, float] | None:
            nonlocal best
            evaluated = _validate(model, cfg, val_sources, info, logger, step, elapsed)
            metric = evaluated.get(tc.best_metric, float("nan")) if evaluated is not None else float("nan")
            metric = distributed.broadcast_object(metric, info)
            if _better(tc.best_metric, metric, best["value"] if best else None):
                best = {"step": step, "value": metric, "metric": tc.best_metric}
                save(step, evaluated)
                if info.is_main:
                    ckpt.write_best(run_dir, step, tc.best_metric, metric)
            net.train()
            return evaluated

        net.train()
        tick = time.perf_counter()
        stream = batches.from_step(start)
        # A process that stops mid-run (an error of its own, a kill) stops the others in their next collective.
        with stop_on_signals() as stop, distributed.report_lost_peer(info):
            while step < tc.steps:  # a re-size moves the end
                step += 1
                seed_step(tc.seed, step, info.rank)
                batch, labeled = _to_device(next(stream), info.device, num_labeled)
                batch["image"] = batch["image"].contiguous(memory_format=memory_format)
                total, terms, norm, updated = _update(net, batch, labeled, cfg, dtype, optimizer, scaler, params)
                if not updated:
                    skipped += 1
                    log.warning("step %d: non-finite gradient norm; update skipped", step)
                scheduler.step()
                window.add({"loss": total, **terms, "grad_norm": norm})
                if step % tc.log_every == 0 or step == tc.steps:
                    log_losses(step)
                if progress is not None and info.is_main:
                    progress(step, tc.steps, last)
                evaluated: dict[str, float] | None = None
                validated = bool(val_sources) and (step % tc.eval_every == 0 or step == tc.steps)
                if validated:
                    evaluated = validate(step)
                now = elapsed + (time.perf_counter() - tick)
                late = tc.max_minutes > 0 and now > 60.0 * tc.max_minutes
                # Any process's clock or signal stops them all at this step (torchrun signals each
                # one); a signal during the last step lets the run simply end. So does a re-size.
                flags = distributed.mean_across({"late": float(late), "stop": float(stop.requested),
                                                 "resize": float(sizer.step_done(step, now))}, info)
                out_of_time = flags["late"] > 0
                stopping = flags["stop"] > 0 and step < tc.steps
                # A run that ends before its last step logs its last stretch of losses and, at the
                # time limit, validates the weights it saves last (best.json); a signal asks for a
                # quick exit: no validation, which can take minutes.
                if (out_of_time or stopping) and window.steps:
                    log_losses(step)
                if out_of_time and not stopping and val_sources and not validated:
                    evaluated = validate(step)
                if flags["resize"] > 0 and not (out_of_time or stopping) and sizer.resize(step, now, info):
                    stream = batches.from_step(step)  # the batches read ahead had the old switch
                if step % tc.checkpoint_every == 0 or step == tc.steps or out_of_time or stopping:
                    if not (best and best["step"] == step):
                        save(step, evaluated)
                if stopping:
                    logger.close()
                    agreed_end = True
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, step, str(run_dir), info.is_main)
                if out_of_time:
                    # Only ever asked for (--minutes, train.max_minutes): the planned end, not a fault.
                    log.info("train.max_minutes=%g reached at step %d; stopping", tc.max_minutes, step)
                    break
        logger.close()
        agreed_end = True
        return run_dir
    finally:
        if batches is not None:
            batches.close()
        if agreed_end:  # not after an error: a group whose peer has gone can block as it is destroyed
            del net
            distributed.release_wrapper(wrapper)
        distributed.teardown()


def _validate(model: nn.Module, cfg: Any, sources: list[dict[str, Any]], info: distributed.DistInfo,
              logger: RunLog, step: int, elapsed: float) -> dict[str, float] | None:
    """Evaluate on the validation sources (main process), log, and return the flat overall metrics."""
    from hiu_model.evaluate import evaluate, flatten

    result = None
    if info.is_main:
        report = evaluate(model, cfg, sources, max_samples=cfg.train.eval_samples, batch_size=cfg.train.batch_size,
                          device=info.device, preferred_splits=("val", "test"))
        result = flatten(report["overall"])
        logger.scalars(step, elapsed, result, prefix="val/")
        if len(report["datasets"]) > 1:
            for name, table in report["datasets"].items():
                logger.scalars(step, elapsed, flatten(table), prefix=f"val/{name}/")
        log.info("step %d validation: %s", step, {k: round(v, 4) for k, v in result.items() if "pck@0.1" in k or "iou" in k})
    distributed.barrier(info)
    return result
