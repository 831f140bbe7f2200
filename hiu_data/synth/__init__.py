"""Synthetic hands: procedural hand scenes rendered with exact labels (the embedded default data).

Modules: :mod:`.poses` (articulations within joint limits), :mod:`.camera` (cameras, views,
placement), :mod:`.appearance` (skin, lights), :mod:`.backgrounds`, :mod:`.occluders`,
:mod:`.forearm`, :mod:`.rig` (the hand model seen through numpy), :mod:`.scene` (one chunk of
scenes: sample, pose, render, composite, label), :mod:`.profiles` (image size and cameras per
output format), :mod:`.generate` (parallel, deterministic generation and the writers behind
``hiu-data synth`` / ``synth-wild``), :mod:`.sheet` (contact sheets).

Importing this package does not import torch; building the first hand model does.
"""

from hiu_data.synth.generate import SynthResult, generate_scenes, write_synth, write_wild
from hiu_data.synth.profiles import FORMATS, Profile, profile_for

__all__ = ["FORMATS", "Profile", "SynthResult", "generate_scenes", "profile_for", "write_synth", "write_wild"]
