"""Every package folder is listed in pyproject.toml, and the schema files ship as package data."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    mapping = project["tool"]["setuptools"]["package-dir"]
    folder_of = {pkg: ROOT / Path(*pkg.split(".")) for pkg in listed}
    for pkg, folder in mapping.items():
        for name in listed:
            if name == pkg or name.startswith(pkg + "."):
                folder_of[name] = ROOT / folder / Path(*name.split(".")[1:])
    found = set()
    for top in ("hiu_data", "hiu_model", "schemas", "cli"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(init.parent)
    assert found == {f for f in folder_of.values()}, "add new package folders to [tool.setuptools] packages"


def test_schema_files_are_package_data() -> None:
    import hiu_schemas

    assert hiu_schemas.hand_sample()["version"] == hiu_schemas.SCHEMA_VERSION
    assert len(hiu_schemas.hand21()["joints"]) == 21
