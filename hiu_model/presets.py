"""The presets of :mod:`hiu_model.config`: ``tiny`` (2 CPU cores) and ``paper`` (the paper's network).

A preset is a function returning a fresh :class:`hiu_model.config.Config`; ``load_config``
starts from one and applies a YAML file and ``--set`` overrides on top. The comments of
``tiny_bf16`` and ``tiny_fp32`` give the measurements behind each value (details in
bench/RESULTS.md, issue 9).

``tiny`` is sized for a budget (15 minutes on 2 CPU cores), and which network makes the most of
it depends on how fast the machine multiplies matrices: ``tiny`` is ``tiny-bf16`` where matrix
products have bf16 hardware (a CUDA device, or a CPU with AMX tiles, where ``train.amp=auto``
trains in bf16) and ``tiny-fp32`` elsewhere. Both names can be asked for directly; a run's
``config.yaml`` holds the values it trained with, so its checkpoints load on any machine.
"""

from __future__ import annotations

import typing
from typing import Any

import torch

from hiu_model.config import SHARED_SIZES, Config, ModelConfig
from hiu_model.distributed import cpu_has_bf16_matmul


def tiny() -> Config:
    """``tiny_bf16`` on a machine with bf16 matrix hardware (:func:`bf16_matrix_hardware`), else
    ``tiny_fp32``."""
    return PRESETS[resolved_name("tiny")]()


def resolved_name(preset: str, device: str = "auto") -> str:
    """The preset ``preset`` stands for on this machine when training on ``device`` (``auto``,
    ``cpu``, ``cuda``, ``cuda:N``): ``tiny`` -> ``tiny-bf16`` or ``tiny-fp32``; any other name
    is itself."""
    if preset != "tiny":
        return preset
    return "tiny-bf16" if bf16_matrix_hardware(device) else "tiny-fp32"


def bf16_matrix_hardware(device: str = "auto") -> bool:
    """Whether ``device`` multiplies matrices in bf16 hardware: a CUDA device (``auto`` picks one
    when there is one), or a CPU with AMX. A CUDA machine told to train on its CPU counts its CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device.startswith("cuda") or (device == "cpu" and cpu_has_bf16_matmul())


def tiny_bf16() -> Config:
    """Small preset for 2 CPU cores with AMX (bf16 matrix tiles) or a GPU: tests, the demo and
    quick experiments.

    128x128 crops of the hand box widened by 10 % on each side, 32x32 heat-maps (Gaussians of
    sigma 2 map pixels), POF and masks, ResNet-18-style blocks with widths 32-96, 32 decoder
    channels, two stacked multi-task blocks (each with its task attention) and a 256-wide
    regressor without dropout whose camera is solved from the heat-map keypoints, trained on
    upright crops (the hand turned to point up; its angle searched at inference) with Muon at
    batch 64 and the default augmentation except in the last quarter of the steps; heat-maps
    decoded after a 1-pixel blur.
    Sized for the training issue's budget (about 15 minutes on 2 CPU cores, 5,000 synthetic
    hands); what it reaches there is in bench/RESULTS.md (issue 9).
    """
    config = Config()
    config.model = ModelConfig(
        input_size=128, heatmap_size=32, mask_size=32, stem_channels=(16, 32), encoder_block="basic",
        encoder_widths=(32, 48, 64, 96), encoder_blocks=(1, 1, 1, 1), decoder_channels=32, num_stacks=2,
        regressor_channels=32, regressor_grid=4, regressor_hidden=256, regressor_layers=2,
        regressor_dropout=0.0, regressor_iterations=3)
    set_data_sizes(config)
    # At 32 px maps one map pixel is 4 crop pixels: a narrower POF band than at 64. The foreground
    # weight and the integral term were chosen by 600-step runs on 5,000 synthetic hands (heat-map
    # PCK@0.1 on held-out hands, sigma 2.5: 0.37; + foreground weight 5: 0.40; + integral loss
    # 10: 0.45), where a wide Gaussian learnt fastest (sigma 1.5: 0.28, 3.5: 0.31). At the full
    # budget a narrower one is more precise: at the step counts of the three 15-minute seeds,
    # sigma 2.0 against 2.5 scored 0.895 / 0.894 / 0.891 against 0.892 / 0.893 / 0.876 (PCK@0.05
    # 0.756 / 0.749 / 0.745 against 0.747 / 0.740 / 0.723); sigma 1.5 on seed 0: 0.891 / 0.764.
    set_if_present(config.data, sigma=2.0, pof_band=1.0)
    config.loss.heatmap_foreground = 5.0
    config.loss.heatmap_integral = 10.0
    # A tighter crop (the box fills 83 % of it, not 67 %) gives the hand 1.25x the pixels at no
    # cost per step. 1,200-step runs, held-out heat-map PCK@0.1 / mesh PCK@0.1 / mask IoU:
    # margin 0.25: 0.681 / 0.621 / 0.836; 0.15: 0.707 / 0.650 / 0.849; 0.1: 0.730 / 0.679 /
    # 0.864; 0.05: 0.722 / 0.673 / 0.867. In 15 minutes: 0.747 / 0.707 / 0.846 -> 0.764 / 0.742 /
    # 0.872. Training still zooms out to 1.5x the box (scale 1.25).
    config.data.margin = 0.1
    # Equal-time runs (bench/RESULTS.md) chose Muon at lr 6e-3 over AdamW at 3e-3 (heat-map
    # PCK@0.1 0.56 -> 0.66 at half the budget). Blocks and augmentation were chosen by full
    # 15-minute runs (heat-map PCK / mask IoU / mesh PCK on held-out hands): with steps as
    # cheap as they are now, one block with milder augmentation (rotation 15 deg, scale
    # 0.9-1.11) over-fits (0.723 / 0.859 / 0.681; 0.825 heat-map PCK on its training hands);
    # the default augmentation closes that gap (0.733 / 0.859 / 0.683, 0.760 on training
    # hands), a second block uses the capacity (0.760 / 0.853 / 0.701), a third costs too
    # many steps (0.752 / 0.843 / 0.672).
    config.train.optimizer = "muon"
    config.train.lr = 6e-3
    # Batch 64 (Muon's rate unchanged): 1.2-1.3x the samples a second on 2 cores. Four pairs of
    # 15-minute runs, held-out heat-map PCK@0.1 batch 64 vs 32: 0.881 / 0.872 and 0.875 / 0.877
    # (seeds 0, 1), then with the cheaper steps and the decoding blur 0.892 / 0.889 and 0.893 /
    # 0.878; mesh PCK 0.881 / 0.879 and 0.886 / 0.869, mask IoU 0.885 / 0.890 and 0.885 / 0.888.
    # A third seed of batch 64: 0.876 (the spread is 0.017 for both): a small gain, at no cost.
    # Batch 128 (4 % more samples a second, half the steps) scored 0.878 on seed 0 (64: 0.892).
    # Random erasing (data.erase_prob 0.5 / 0.2) halves the training/held-out gap but costs
    # fit: 0.878 / 0.879 on seed 0, so it stays off here.
    config.train.batch_size = 64
    config.train.warmup_steps = 100
    # The last quarter of the steps on un-augmented crops: +0.007 / +0.010 heat-map PCK and
    # +0.012 / +0.018 mesh PCK after 1,200 steps (two seeds), +0.005 / +0.004 in 15 minutes.
    config.train.final_plain_fraction = 0.25
    # The renderer was a quarter of a step; rendering 8 rows of 32 for the silhouette term
    # costs no accuracy at equal steps (without that term at all: 0.674 / 0.606 / 0.851 vs
    # 0.679 / 0.611 / 0.850 heat-map PCK / mesh PCK / mask IoU after 1,500 steps).
    config.train.silhouette_samples = 8
    # The regressed weak-perspective translation was the mesh branch's largest 2D error: solving
    # the camera from the heat-map keypoints lifted the projected-mesh PCK@0.1 from 0.601 to
    # 0.621 after 1,200 steps (0.616 when only evaluation used it) and from 0.701 to 0.737 in
    # the 15-minute run, heat-map PCK unchanged.
    config.model.camera_from_keypoints = True
    # Upright crops (hiu_model/upright.py): the hand turned to point up in training, the angle
    # searched at inference. 1,200 steps, 300 held-out hands, heat-map PCK@0.1 / mesh PCK@0.1 /
    # mask IoU: 0.737 / 0.691 / 0.865 -> 0.837 / 0.820 / 0.879 (0.859 / 0.849 / 0.882 when the
    # evaluation crops are turned with the labels: what the search leaves on the table). In 15
    # minutes (572 hands): 0.771 / 0.753 / 0.871 -> 0.872 / 0.865 / 0.884.
    config.data.upright = True
    # Keypoints from heat-maps blurred by 1 map pixel (DARK's modulation): the 15-minute run's
    # weights, heat-map PCK@0.1 / PCK@0.05 on 400 of its training hands 0.879 / 0.732 -> 0.885 /
    # 0.739 (blur 1.5: 0.887 / 0.736, 2: 0.888 / 0.725, trading precision for the mode with the
    # most mass); on the 572 held-out hands 0.872 / 0.714 -> 0.876 / 0.713.
    config.model.heatmap_decode_smoothing = 1.0
    return config


def paper() -> Config:
    """The paper's network: 256x256 input, 64x64 maps, ResNet-50 encoders, 4 stacks."""
    config = Config()
    set_data_sizes(config)
    return config


def tiny_fp32() -> Config:
    """``tiny_bf16`` made cheaper for CPUs that multiply matrices in float32 only (AVX2, AVX-512
    without AMX): one multi-task block, a 3x3 second stem convolution, 1x1 prediction heads, no
    POF task, a second basic block in the two coarsest encoder stages, and milder augmentation
    (rotations of +-20 degrees, scale 0.9-1.12) for its shorter runs.

    On such a CPU a convolution runs at the matrix-product peak (70 GFLOP/s on a 2-core AVX2 EPYC)
    and convolutions are two thirds of a ``tiny_bf16`` step (2.5 s at batch 64), so fewer of them
    buy steps; with AMX the same steps take 0.6 s, mostly outside the convolutions, where the
    second block was worth more than the steps it cost (bench/RESULTS.md, issue 9).
    """
    config = tiny_bf16()
    # 15-minute runs on the 2-core AVX2 EPYC (`hiu-data train --minutes 15`, 572 held-out hands;
    # heat-map PCK@0.1 / mask IoU / mesh PCK@0.1, steps of batch 64): tiny_bf16 324 steps,
    # 0.758 / 0.849 / 0.716; one block 519 steps, 0.783 / 0.865 / 0.761; and a 3x3 second stem
    # convolution with 1x1 heads 635 steps, 0.807 / 0.871 / 0.784; and no POF task 777 steps,
    # 0.819 / 0.873 / 0.804 (seed 1: 761 steps, 0.802 / 0.870 / 0.787). The POF maps are an
    # auxiliary target (no metric reads them): here their decoder costs more steps than it
    # teaches. Batch 32 (1,347 steps) scored the same as 64 (0.821 / 0.878 / 0.808). Since the
    # first block reads the stem's features without zero channels (``model.first_block_zeros``
    # off, every preset): 832 steps, 0.824 / 0.873 / 0.801.
    config.model.num_stacks = 1
    config.model.stem_kernels = (7, 3)
    config.model.decoder_head_conv = False
    config.model.tasks = ("heatmap", "mask", "mesh")
    # Milder augmentation for the shorter runs: this network under-fits in 15 minutes (on 572
    # of its own training hands, un-augmented, 0.829 against 0.819 held-out), and rotations of
    # +-20 degrees still cover the upright search's misses (within 9 degrees for 90 % of the
    # hands). 15-minute runs as above: rotation 20, scale 0.9-1.12: 831 steps, 0.839 / 0.877 /
    # 0.816 (seed 1: 835 steps, 0.827 / 0.874 / 0.807); milder still (scale 0.93-1.08, shift
    # 0.04): 848 steps, 0.830 / 0.873 / 0.811. tiny_bf16's longer runs on AMX kept +-30 degrees
    # (+-20 there: +0.005, inside the seeds' spread).
    config.data.rotation_deg = 20.0
    config.data.scale_range = (0.9, 1.12)
    # Under-fitting again: a second basic block in the 8x8 and 4x4 encoder stages adds two fifths
    # of the parameters for 10 % more multiply-adds (10-12 % of a step's time): 776 steps, 0.848 /
    # 0.876 / 0.822 (seed 1: 813 steps, 0.838 / 0.879 / 0.820), +0.009 and +0.011 heat-map PCK
    # over the two seeds above.
    config.model.encoder_blocks = (1, 1, 2, 2)
    # Tried next and not kept (15-minute runs as above, seed 0, against 0.848 / 0.876 / 0.822):
    # 112-pixel crops (943 steps, 0.841 / 0.866 / 0.824), a third block in the 8x8 and 4x4 stages
    # (750 steps, 0.814), the mask as a head on the heat-map decoder instead of a decoder of its
    # own (919 steps, 0.849 / 0.831 / 0.825: the mask falls below 0.85), wider decoder levels
    # (0.843), Muon lr 8e-3 with 50 warm-up steps (0.845), 40 % plain steps at the end (0.846),
    # a self-attention block after the 8x8 and the 4x4 stage (820 steps, 0.839). With the heat-maps
    # alone (no mask, no mesh: 1,168 steps) they reach 0.866: sharing the 15 minutes otherwise
    # among the tasks cannot reach 0.90 here.
    return config


PRESETS: dict[str, typing.Callable[[], Config]] = {
    "tiny": tiny, "tiny-bf16": tiny_bf16, "tiny-fp32": tiny_fp32, "paper": paper}


def set_data_sizes(config: Config) -> None:
    """Copy the model's input, heat-map and mask sizes to the data options that have them."""
    set_if_present(config.data, **{name: getattr(config.model, name) for name in SHARED_SIZES})


def set_if_present(options: Any, **values: Any) -> None:
    """Set the fields of ``options`` that it has (the data options of a build may lack some)."""
    for name, value in values.items():
        if hasattr(options, name):
            setattr(options, name, value)
