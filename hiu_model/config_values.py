"""Dataclass configurations from nested mappings: strict keys, checked types, YAML files.

Generic machinery behind :func:`hiu_model.config.load_config`: :func:`merge_into` sets the
fields of a (nested) dataclass from a mapping, rejecting unknown keys with the closest known
key as a suggestion and checking each value against the field's type annotation (lists
become tuples where the field is a tuple); :func:`read_yaml_mapping` reads a YAML file whose
errors name the file; :func:`plain` turns ``dataclasses.asdict`` output into JSON-ready values.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from hiu_data.errors import HiuError


class ConfigError(HiuError):
    """A configuration file or override is malformed, names an unknown key, or is inconsistent."""


def _folder_hint(path: Path) -> str:
    """What a folder given as the config most likely meant (a dataset or a run folder)."""
    if (path / "manifest.json").is_file() or any(path.glob("*/manifest.json")):
        return "training data goes in --data DIR"
    if (path / "config.yaml").is_file():
        return f"to continue that run: --out {path} --resume; to start from its settings: {path / 'config.yaml'}"
    return "pass a .yaml file, or only flags (--preset, --data ...)"


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping key given twice (PyYAML keeps the last one silently,
    so a second ``train:`` section would drop every value of the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class names it
                break
            if first is not None:
                raise _DuplicateKey(f"{key!r} is given twice (first at line {first.start_mark.line + 1})",
                                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """One line for a YAML error: where (line and column, 1-based) and what."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if isinstance(error, _DuplicateKey):
        return f"{path}: {where}{problem}"
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        problem += f", {context} that starts at line {context_mark.line + 1}"
    if "'\\t'" in problem:
        problem += "; indent with spaces: a tab cannot indent YAML"
    return f"{path}: {where}not valid YAML ({problem})"


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} when empty); errors name the file and the line."""
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a YAML config file; {_folder_hint(path)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_problem(path, error)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config ({str(error).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections (model, data, loss, train)")
    return values


def parse_override(override: str) -> tuple[str, Any]:
    """``section.key=value`` -> (``section.key``, the value parsed as YAML: ``3``, ``0.5``,
    ``true``, ``[1, 2]``; None when empty). Raises :class:`ConfigError` for another form."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    try:
        return key.strip(), (yaml.safe_load(text) if text.strip() else None)
    except yaml.YAMLError as error:
        # yaml's own message spans lines (it draws the value and a caret): its problem alone
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override {override!r}: value is not valid YAML ({problem})") from None


def requested_value(values: dict[str, Any], overrides: list[tuple[str, Any]], key: str) -> Any:
    """The value the dotted ``key`` (``train.device``) gets from the last of the parsed
    ``overrides`` (:func:`parse_override`) naming it, or else from the file's nested ``values``;
    None when neither sets it."""
    for name, value in reversed(overrides):
        if name == key:
            return value
    found: Any = values
    for part in key.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    return found


def merge_into(target: Any, values: dict[str, Any], where: str, explicit: set[str], prefix: str = "") -> None:
    """Set the fields of dataclass ``target`` from ``values`` recursively, checking names and types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(target)}
    hints = typing.get_type_hints(type(target))
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = [f"{prefix}{name}" for name in fields]
            close = difflib.get_close_matches(dotted, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"{where}unknown key {dotted!r}{hint}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if value is None:  # a section left empty (its lines commented out) changes nothing
                continue
            merge_into(current, value, where, explicit, dotted + ".")
        else:
            setattr(target, key, coerce(value, hints[key], f"{where}{dotted}"))
            explicit.add(dotted)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type annotation ``hint``; lists become tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: {value!r} is not allowed")
    if origin is list and value is None:
        return []  # a list key with every entry commented out (null in YAML): none
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [coerce(v, args[0], where) for v in value]
        elif origin is tuple and args:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [coerce(v, a, where) for v, a in zip(value, args)]
        else:
            items = [coerce(v, args[0], where) if args else v for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads exponent notation without a dot (``3e-3``) as a string.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, bool):
            value = "on" if value else "off"  # YAML 1.1 reads on/off (and yes/no) as booleans
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def plain(value: Any) -> Any:
    """Nested dicts / lists / tuples with tuples turned into lists (JSON and YAML ready)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


# --- value ranges -----------------------------------------------------------------------------

def _at_least(low: float) -> tuple[Any, str]:
    return (lambda v: v >= low), f"must be >= {low:g}"


def _positive() -> tuple[Any, str]:
    return (lambda v: v > 0), "must be > 0"


def _within(low: float, high: float, high_open: bool = False) -> tuple[Any, str]:
    if high_open:
        return (lambda v: low <= v < high), f"must be in [{low:g}, {high:g})"
    return (lambda v: low <= v <= high), f"must be in [{low:g}, {high:g}]"


def _one_of(*choices: str) -> tuple[Any, str]:
    return (lambda v: v in choices), f"must be one of {', '.join(choices)}"


# Section.field -> (test of one value, what it must be). Lists and tuples are tested element by
# element; None (an optional field left unset) passes. Without these, a zero size or channel
# count fails deep inside a layer (or hangs a weight initialiser) and a NaN learning rate trains.
RANGES: dict[str, tuple[Any, str]] = {
    **{f"model.{name}": _at_least(1) for name in (
        "input_size", "heatmap_size", "mask_size", "stem_channels", "encoder_widths", "decoder_channels",
        "decoder_widths", "num_stacks", "tam_reduction", "regressor_channels", "regressor_grid", "regressor_hidden",
        "regressor_layers", "regressor_iterations", "silhouette_faces_per_pixel")},
    "model.stem_kernels": ((lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1), "must be odd numbers >= 1"),
    "model.regressor_dropout": _within(0.0, 1.0, high_open=True),
    "model.soft_argmax_beta": _positive(),
    "model.heatmap_decode_smoothing": _at_least(0),
    "model.crop_extent_m": _positive(),
    "model.silhouette_sigma": _positive(),
    "model.hand_model": _one_of("auto", "mano", "procedural"),
    **{f"data.{name}": _at_least(0) for name in (
        "margin", "rotation_deg", "translation", "brightness", "contrast", "saturation", "hue_deg", "pof_band")},
    "data.sigma": _positive(),
    "data.scale_range": _positive(),
    "data.blur_prob": _within(0.0, 1.0),
    "data.erase_prob": _within(0.0, 1.0),
    "data.erase_area": _within(0.0, 1.0),
    "data.blur_sigma": _positive(),
    "data.std": _positive(),
    **{f"train.{name}": _at_least(1) for name in (
        "steps", "batch_size", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints")},
    **{f"train.{name}": _at_least(0) for name in (
        "weight_decay", "warmup_steps", "grad_clip", "eval_samples", "num_workers", "max_minutes")},
    "train.lr": _positive(),
    # The overall validation metrics are BRANCH/METRIC (hiu_model.evaluate.flatten).
    "train.best_metric": ((lambda v: v.split("/")[0] in ("heatmap", "mesh", "mask", "silhouette") and "/" in v),
                          "must be BRANCH/METRIC with BRANCH heatmap, mesh, mask or silhouette, e.g. heatmap/pck@0.1"),
    "train.min_lr_ratio": _within(0.0, 1.0),
    "loss.heatmap_hard_joints": _at_least(0),
}


def check_ranges(config: Any) -> None:
    """Check every field named in :data:`RANGES` (and that every number is finite); raises
    :class:`ConfigError` naming the first field out of range."""
    for section in dataclasses.fields(config):
        options = getattr(config, section.name)
        for item in dataclasses.fields(options):
            name, value = f"{section.name}.{item.name}", getattr(options, item.name)
            values = value if isinstance(value, (list, tuple)) else [value]
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if any(v != v or v in (float("inf"), float("-inf")) for v in numbers):
                raise ConfigError(f"{name}: must be a finite number, got {plain(value)!r}")
            rule = RANGES.get(name)
            if rule is not None and not all(v is None or rule[0](v) for v in values):
                raise ConfigError(f"{name}: {rule[1]}, got {plain(value)!r}")
