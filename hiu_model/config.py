"""Configuration of HIU-DMTL: dataclasses, YAML + overrides on a preset (:mod:`hiu_model.presets`).

A :class:`Config` has four sections: ``model`` (:class:`ModelConfig`, the network),
``data`` (:class:`hiu_model.data.DataOptions`, crops and targets), ``loss``
(:class:`LossConfig`, the loss weights) and ``train`` (:class:`TrainConfig`, owned by the
training code). :func:`load_config` starts from a preset (or the dataclass defaults, which are
the ``paper`` values), applies a YAML file, then ``a.b=c`` overrides. Unknown keys are errors
that suggest the closest known key. Values are checked against the field types.

The paper (HIU-DMTL, ICCV 2021) gives the stem, the ResNet-50 encoder and the 64x64 decoder
features; it is silent on everything else. Every such default is a choice, written down at its
field below. Sizes: the model's ``input_size`` / ``heatmap_size`` / ``mask_size`` and the data
section's fields of the same names must agree; a value set on one side only is copied to the
other.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hiu_data.targets import DEFAULT_SOFTARGMAX_BETA
from hiu_model.config_sources import absolute_path, check_sources
from hiu_model.config_values import (ConfigError, check_ranges, merge_into, parse_override, plain,
                                     read_yaml_mapping, requested_value)
from hiu_model.data import DataOptions
from hiu_model.optim import OPTIMIZERS

TASKS: tuple[str, ...] = ("heatmap", "mask", "pof", "mesh")
"""Task names of ``ModelConfig.tasks``: 2D heat-maps, hand mask, part orientation fields, and
the mesh branch (MANO regressor, projection, silhouette)."""

SHARED_SIZES: tuple[str, ...] = ("input_size", "heatmap_size", "mask_size")


@dataclass
class ModelConfig:
    """The network. Defaults are the ``paper`` preset.

    Architecture (paper): stem of two 7x7 stride-2 convs (64, 128 channels); a ResNet-50 body
    as the encoder of each stacked multi-task block; heat-map, mask and POF decoders with 256
    feature channels at 64x64; the task attention module; iterative regressors; MANO.
    Choices where the paper is silent are marked CHOICE.
    """

    input_size: int = 256
    """Side of the square input crop in pixels (paper: 256)."""
    heatmap_size: int = 64
    """Side of the heat-map and POF predictions (CHOICE: 64 as HAMR; the paper's intermediate
    heat-maps are 128). The features are always at input_size / 4 (after the stem)."""
    mask_size: int = 64
    """Side of the predicted mask and the rendered silhouette (CHOICE: 64; the paper's
    intermediate mask is 256, which makes the silhouette 16x costlier)."""
    stem_channels: tuple[int, int] = (64, 128)
    stem_kernels: tuple[int, int] = (7, 7)
    """Kernel sides of the two stride-2 stem convolutions (paper: 7x7 both; odd numbers)."""
    encoder_block: str = "bottleneck"
    """``bottleneck`` (ResNet-50) or ``basic`` (ResNet-18 style, for light presets)."""
    encoder_widths: tuple[int, ...] = (256, 512, 1024, 2048)
    encoder_blocks: tuple[int, ...] = (3, 4, 6, 3)
    """Standard ResNet-50 (the appendix's "3, 4, 5, 6" is read as a typo)."""
    decoder_channels: int = 256
    decoder_widths: tuple[int, ...] = ()
    """Decoder channels at each encoder level, finest first (the first is ``decoder_channels``);
    empty = ``decoder_channels`` at every level (the paper's FPN-like decoders). CHOICE for
    light presets: wider at the coarse levels, where a channel costs little, so that what the
    deep encoder stages know about the whole hand reaches the heads."""
    decoder_head_conv: bool = True
    """CHOICE: each task decoder's prediction head is a 3x3 convolution (with norm and ReLU)
    followed by the 1x1 prediction; off = the 1x1 prediction straight from the decoder's
    features (six fewer 3x3 convolutions at the finest level for three tasks and two stacks)."""
    num_stacks: int = 4
    """Stacked multi-task blocks (the issue's paper preset: 4)."""
    first_block_zeros: bool = False
    """The first block reads the stem's features next to ``decoder_channels`` zero channels,
    where the later blocks read the previous block's fused features, so that every block has
    the same layout. Off (the default) it reads the stem's features alone: the same function
    for less work (``tiny-fp32``: a 1x1 projection and half a 3x3 convolution fewer at the
    finest level, 7 % more steps in 15 minutes). Runs stored before this option trained with
    the zeros: a stored configuration without the key loads with True (:func:`load_config`
    ``stored``)."""
    use_tam: bool = True
    """Task attention module; off = concatenation + 3x3 conv (the paper's ablation)."""
    tam_reduction: int = 4
    """CHOICE (SKNet): TAM bottleneck width = max(decoder_channels // reduction, 32)."""
    tasks: tuple[str, ...] = TASKS
    """Enabled tasks, a subset of ``TASKS``; at least one of heatmap, mask, pof."""
    regressor_channels: int = 256
    """CHOICE: width of the stride-2 convs that shrink the last fused map for the regressor."""
    regressor_grid: int = 4
    """CHOICE: the regressor flattens a grid x grid map (keeps where the hand is)."""
    regressor_hidden: int = 1024
    """HMR/HAMR: two hidden layers of 1024 with dropout 0.5 and 3 iterations."""
    regressor_layers: int = 2
    regressor_dropout: float = 0.5
    regressor_iterations: int = 3
    regressor_uses_keypoints: bool = True
    """CHOICE: the regressor also reads the heat-maps' soft-arg-max (21 x 2, normalised)."""
    camera_from_keypoints: bool = False
    """CHOICE: the mesh's weak-perspective scale and translation are not taken from the
    regressor but solved in closed form (weighted least squares) so that the mesh's joints
    project onto the heat-maps' soft-arg-max, each joint weighted by its heat-map peak. The
    regressed pose, shape and 3D joints are unchanged; an MLP on a 4x4 grid places the hand
    less precisely than the heat-maps do."""
    heatmap_decode_smoothing: float = 0.0
    """Standard deviation in heat-map pixels of the Gaussian blur before the heat-maps are decoded
    into keypoints at inference (:func:`hiu_data.targets.decode_heatmaps`); 0 = none. CHOICE:
    ``tiny`` sets 1.0 (bench/RESULTS.md, issue 9)."""
    soft_argmax_beta: float = DEFAULT_SOFTARGMAX_BETA
    """Inverse temperature of the soft-arg-max over heat-maps (peak 1); the targets' default."""
    pose_representation: str = "6d"
    """``6d`` (continuous rotations, HaMeR) or ``axis_angle`` (residuals, HMR): 16 joint
    rotations relative to MANO's mean pose."""
    hand_model: str = "auto"
    """``auto`` (MANO when its files exist, else the procedural hand), ``mano`` or ``procedural``."""
    mano_dir: str | None = None
    crop_extent_m: float = 0.3
    """CHOICE: the initial weak-perspective scale maps this many metres onto the crop width
    (s = input_size / crop_extent_m pixels per metre); a hand is about 0.19 m long."""
    silhouette_sigma: float | None = None
    """Soft-rasteriser sharpness in mask pixels squared; ``None`` = PyTorch3D's default
    (1e-4 in NDC units squared) converted to the mask size: 0.1 px^2 at 64, 0.026 at 32.
    CHOICE: softer values (the renderer's 1 px^2) dilate the silhouette of a closed hand mesh
    by 1-2 pixels at these sizes, because every face near an edge adds to the coverage."""
    silhouette_faces_per_pixel: int | None = None
    """CHOICE: blend every face in the blur band (None): exact, and no costlier here. A number K
    keeps each pixel's K faces of largest coverage (not PyTorch3D's nearest in depth, with which
    fingers vanish at K = 8-20); K = 50 moves alpha by about 1e-3 at most (hiu_model.render)."""


@dataclass
class LossConfig:
    """Weights and forms of the loss terms (see :mod:`hiu_model.losses`). The paper gives no
    weights; all are CHOICES balanced so that each term starts at order 1 with the targets of
    :mod:`hiu_data.targets` (heat-map peak 1, unit POF vectors)."""

    heatmap: float = 1.0
    """Squared error summed over pixels, mean over valid joints and over stacks."""
    heatmap_foreground: float = 0.0
    """CHOICE: each heat-map pixel's squared error is weighted ``1 + heatmap_foreground * target``,
    so the few pixels of a peak are not outweighed by the zero background (0 = plain MSE)."""
    heatmap_hard_joints: int = 0
    """CHOICE (online hard keypoint mining, Chen et al. 2018, CPN): the heat-map term of each
    sample averages only its ``heatmap_hard_joints`` joints of largest error (0 = all joints)."""
    heatmap_integral: float = 0.0
    """CHOICE (Integral Human Pose, Sun et al. 2018): L1 of the last heat-maps' soft-arg-max
    against the labelled 2D joints, in units of the crop side, visible joints (0 = off)."""
    pof: float = 1.0
    """Squared error summed over pixels, mean over valid channels (z masked without 3D)."""
    mask: float = 1.0
    """Binary cross-entropy on the mask logits, mean over pixels, for every stack."""
    bone_orientation: float = 1.0
    """Squared distance of unit 3D bone directions, mean over bones; samples with 3D."""
    reprojection: float = 10.0
    """L1 of the mesh branch's projected joints in units of the crop side; visible joints."""
    mask_reprojection: float = 1.0
    """Squared error of the rendered silhouette against the mask target."""
    mano_pose: float = 1.0
    """Squared Frobenius distance of per-joint rotation matrices; samples with MANO labels."""
    mano_betas: float = 0.1
    pose_prior: float = 1e-3
    """Prior on the pose (squared axis-angle offset from the mean pose), every sample."""
    betas_prior: float = 1e-3
    self_mask: float = 1.0
    """Self-supervised: rendered silhouette vs. the predicted mask (unlabeled samples)."""
    self_keypoints: float = 10.0
    """Self-supervised: projected joints vs. the heat-maps' soft-arg-max, L1 in crop units."""
    detach_self_targets: bool = True
    """CHOICE: the dense predictions teach the mesh branch (not the other way round)."""
    self_supervised_on_labeled: bool = False
    """Also apply the self-supervised pair to labeled samples."""


@dataclass
class TrainConfig:
    """Training options (see :mod:`hiu_model.train`). A data source is a path or a mapping
    ``{path, weight, split}``; ``weight`` is its relative drawing probability (default 1, per
    source, not per row); :mod:`hiu_model.config_sources` has the rules and checks them."""

    datasets: list[Any] = field(default_factory=list)
    """Labeled sources: converted dataset folders (default split ``train``)."""
    unlabeled: list[Any] = field(default_factory=list)
    """Unlabeled sources: converted folders or plain image folders; only the self-supervised
    losses see them (their labels, if any, are ignored)."""
    val: list[Any] = field(default_factory=list)
    """Validation sources (default split ``val``, else ``test``), evaluated every ``eval_every``."""
    steps: int = 100_000
    batch_size: int = 32
    """Per process; the effective batch is ``batch_size * world_size``."""
    optimizer: str = "adamw"
    """``adamw``, or ``muon`` (Muon on the hidden convolution / linear weights, AdamW on the
    rest; see :mod:`hiu_model.optim`)."""
    lr: float = 1e-3
    weight_decay: float = 1e-4
    """AdamW (decoupled) weight decay, not applied to norms and biases."""
    warmup_steps: int = 1000
    """Linear warm-up; capped at a tenth of ``steps`` so that short runs are not all warm-up."""
    schedule: str = "cosine"
    """``cosine`` (to ``min_lr_ratio * lr`` at ``steps``), ``step`` (x0.1 at 60% and 85%) or ``constant``."""
    min_lr_ratio: float = 0.01
    final_plain_fraction: float = 0.0
    """CHOICE (as YOLOX turns its mosaic off for the last epochs): this fraction of the steps,
    at the end, trains on crops without augmentation, the crops evaluation sees (0 = augment
    throughout). A run stopped early by ``max_minutes`` has fewer of them."""
    grad_clip: float = 5.0
    """Max global gradient norm; 0 disables clipping."""
    amp: str = "auto"
    """Mixed precision: ``auto`` (GPU: bf16 where supported, else fp16; CPU: bf16 where the
    processor has AMX tiles, else off), ``off``, ``bf16``, ``fp16`` (GPU only). The mesh branch
    after the regressor's convolutions (regressor iterations, hand model, renderer) always runs
    in float32."""
    channels_last: bool = True
    """Convolutions in NHWC layout (weights and input crops): faster steps on the CPU (oneDNN;
    9 % for ``tiny`` in float32) and the layout GPU tensor cores want under mixed precision. Checkpoints are stored
    in the usual layout either way."""
    silhouette_samples: int = 0
    """Rows of each batch whose mesh silhouette is rendered for the silhouette loss terms (0 =
    all). Unlabeled rows are always rendered (their self-supervised mask term needs them);
    labeled rows fill the rest in batch order, which is random. Evaluation renders every row."""
    device: str = "auto"
    seed: int = 0
    num_workers: int | None = None
    """Loader processes; ``None`` = :func:`hiu_model.train_data.loader_workers`: none on a CPU of
    up to 4 cores per process (the workers would take the cores torch computes on: 7 % faster
    steps for ``tiny`` on 2 cores), else 2."""
    log_every: int = 20
    eval_every: int = 2000
    eval_samples: int = 500
    """Rows per validation source at each periodic evaluation (0 = all)."""
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    best_metric: str = "heatmap/pck@0.1"
    """Overall validation metric that picks ``best.json`` (higher is better unless it ends in
    ``_px``/``_mm``)."""
    max_minutes: float = 0.0
    """Stop (with a checkpoint) after this much training time; 0 = no limit."""


@dataclass
class Config:
    """The full configuration: ``model``, ``data``, ``loss``, ``train``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataOptions = field(default_factory=DataOptions)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), suitable for JSON and YAML."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict`; unknown keys are :class:`ConfigError`."""
        config = cls()
        merge_into(config, values, "", set())
        validate(config)
        return config


def load_config(path: str | Path | None = None, preset: str | None = None,
                overrides: Iterable[str] = (), *, relative_to: str | Path | None = None,
                stored: bool = False) -> Config:
    """Build a :class:`Config`: preset, then the YAML file at ``path``, then ``overrides``.

    Paths (the data sources of ``train``, ``model.mano_dir``) come out absolute: relative ones
    in the file are relative to the file's folder, those of ``overrides`` to the current folder
    (the rule and why: :mod:`hiu_model.config_sources`).

    Args:
        path: YAML file with sections ``model``, ``data``, ``loss``, ``train`` and optionally
            ``preset: tiny|paper`` (used when the ``preset`` argument is None).
        preset: a name of :data:`hiu_model.presets.PRESETS` (``tiny``: the network for the device
            ``train.device`` asks for); ``None`` = the file's preset or the dataclass defaults.
        overrides: ``section.key=value`` strings; values are parsed as YAML (``3``, ``0.5``,
            ``true``, ``[1, 2]``, ``null``).
        relative_to: the folder relative paths of the file are relative to, instead of the
            file's own (a stored configuration written before paths were stored absolute).
        stored: ``path`` is a run's own configuration (its ``config.yaml``, a checkpoint's
            config): values its version of hiu did not write yet take what that version did
            (:data:`STORED_BEFORE_OPTION`), not today's defaults.
    Raises:
        ConfigError: unreadable file, unknown key (with a suggestion), wrong value type, or
            inconsistent sizes.
    """
    from hiu_model.presets import PRESETS, paper, resolved_name  # the presets build on the classes above

    values: dict[str, Any] = read_yaml_mapping(Path(path)) if path is not None else {}
    overrides = list(overrides)
    parsed = [parse_override(override) for override in overrides]
    where = f"{path}: " if path else ""
    if stored:
        _older_behaviour(values)
    from_file = values.pop("preset", None)
    # The argument (--preset) wins over the file's preset; an error names where the name came from.
    preset, origin = (preset, "") if preset else (from_file, where)
    if preset is not None and preset not in PRESETS:
        close = difflib.get_close_matches(str(preset), PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; available: {', '.join(PRESETS)}"
        raise ConfigError(f"{origin}unknown preset {preset!r}{hint}")
    device = requested_value(values, parsed, "train.device")
    config = PRESETS[resolved_name(preset, str(device or "auto"))]() if preset else paper()
    explicit: set[str] = set()
    merge_into(config, values, where, explicit)
    _absolute_paths(config, where, Path(relative_to) if relative_to is not None else Path(path or ".").parent)
    for override, (key, value) in zip(overrides, parsed):
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        merge_into(config, nested, f"--set {override}: ", explicit)
        _absolute_paths(config, f"--set {override}: ", Path.cwd())
    _sync_sizes(config, explicit)
    validate(config)
    return config


STORED_BEFORE_OPTION: dict[str, dict[str, Any]] = {"model": {"first_block_zeros": True}}
"""What a run stored before an option existed did, per section and key: such a run's
configuration lacks the key, and its checkpoints only load with the old behaviour."""


def _older_behaviour(values: dict[str, Any]) -> None:
    """Fill the keys of :data:`STORED_BEFORE_OPTION` that a stored configuration lacks (in place)."""
    for section, options in STORED_BEFORE_OPTION.items():
        if isinstance(values.get(section), dict):
            for key, value in options.items():
                values[section].setdefault(key, value)


def validate(config: Config) -> None:
    """Check the value ranges and cross-field rules of a configuration; raises :class:`ConfigError`."""
    check_ranges(config)
    model = config.model
    if config.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: {config.train.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    unknown = [task for task in model.tasks if task not in TASKS]
    if unknown:
        raise ConfigError(f"model.tasks: unknown task(s) {unknown}; available: {', '.join(TASKS)}")
    if not set(model.tasks) & {"heatmap", "mask", "pof"}:
        raise ConfigError("model.tasks: enable at least one of heatmap, mask, pof")
    if config.data.upright and "heatmap" not in model.tasks:
        raise ConfigError("data.upright (on in the tiny preset) needs the heatmap task, whose heat-maps the upright "
                          "search reads: add heatmap to model.tasks or set data.upright=false")
    if model.input_size % 4:
        raise ConfigError(f"model.input_size: {model.input_size} is not a multiple of 4 (the stem downsamples 4x)")
    if len(model.encoder_widths) != len(model.encoder_blocks) or min(model.encoder_blocks, default=0) < 1:
        raise ConfigError("model.encoder_widths and model.encoder_blocks need the same length and >= 1 block per stage")
    if model.encoder_block not in ("basic", "bottleneck"):
        raise ConfigError(f"model.encoder_block: {model.encoder_block!r} is not basic or bottleneck")
    if model.pose_representation not in ("6d", "axis_angle"):
        raise ConfigError(f"model.pose_representation: {model.pose_representation!r} is not 6d or axis_angle")
    if model.decoder_widths and (len(model.decoder_widths) != len(model.encoder_widths)
                                 or model.decoder_widths[0] != model.decoder_channels):
        raise ConfigError(f"model.decoder_widths: {list(model.decoder_widths)} needs one width per encoder stage "
                          f"({len(model.encoder_widths)}), decoder_channels ({model.decoder_channels}) first")
    for name, value in (("num_stacks", model.num_stacks), ("regressor_iterations", model.regressor_iterations)):
        if value < 1:
            raise ConfigError(f"model.{name}: must be >= 1, got {value}")
    if not 0.0 <= config.train.final_plain_fraction < 1.0:
        raise ConfigError(f"train.final_plain_fraction: must be in [0, 1), got {config.train.final_plain_fraction}")
    if config.train.silhouette_samples < 0:
        raise ConfigError(f"train.silhouette_samples: must be >= 0 (0 = every row), got {config.train.silhouette_samples}")
    for name in SHARED_SIZES:
        if hasattr(config.data, name) and getattr(config.data, name) != getattr(model, name):
            raise ConfigError(f"data.{name} ({getattr(config.data, name)}) differs from model.{name} "
                              f"({getattr(model, name)}); set one of them")


# --- helpers ---------------------------------------------------------------------------------


def _absolute_paths(config: Config, where: str, base: Path) -> None:
    """Check the data sources and make every path absolute, relative ones relative to ``base``
    (paths made absolute before stay as they are)."""
    check_sources(config.train, where, base)
    if config.model.mano_dir is not None:
        config.model.mano_dir = absolute_path(config.model.mano_dir, base)


def _sync_sizes(config: Config, explicit: set[str]) -> None:
    for name in SHARED_SIZES:
        if not hasattr(config.data, name):
            continue
        model_set, data_set = f"model.{name}" in explicit, f"data.{name}" in explicit
        if data_set and not model_set:
            setattr(config.model, name, getattr(config.data, name))
        elif model_set and not data_set:
            setattr(config.data, name, getattr(config.model, name))
