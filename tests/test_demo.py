"""The demo end to end with a tiny budget: every stage's output exists and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiu_data.io.parquet import HandDataset
from hiu_data.validate import validate


@pytest.fixture
def fiftyone_db(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("fiftyone-db")
    monkeypatch.setenv("FIFTYONE_DATABASE_DIR", str(folder))
    return folder


def test_demo_runs_every_stage(tmp_path: Path, fiftyone_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hiu_model.demo import SOURCE_FORMATS, DemoOptions, run_demo

    # The review images are cached under $HIU_HOME: the test's stay in its own folder.
    monkeypatch.setenv("HIU_HOME", str(tmp_path / "home"))

    calls: list[tuple[str, str]] = []

    class Recorder:
        def start(self, stage, total):  # noqa: ANN001, ANN202
            calls.append(("start", stage))
            return lambda n=1: None

        def set_total(self, stage, total):  # noqa: ANN001, ANN202
            calls.append(("set_total", stage))
            totals.append(total)

        def finish(self, stage, summary):  # noqa: ANN001, ANN202
            calls.append(("finish", stage))

    # The budget's steps come from a timing that says 1.2 s a step (10 steps in 12 s); the real
    # steps of batch 4 are several times faster, and training re-sizes the schedule to them.
    from hiu_model import budget

    monkeypatch.setattr(budget, "time_step", lambda cfg, batch_size, max_seconds=None: 1.2)
    totals: list[int] = []
    out = tmp_path / "demo"
    result = run_demo(DemoOptions(out=out, hands_per_source=10, wild_images=4, minutes=0.2, batch_size=4,
                                  eval_samples=8, workers=1, review=True), Recorder())

    stages = [s for kind, s in calls if kind == "finish"]
    assert stages == ["generate raw layouts", "convert", "validate", "generate wild folder", "train",
                      "evaluate", "pseudo-label", "overlays", "push to FiftyOne"]
    for name in SOURCE_FORMATS:
        assert any((out / "raw" / name).iterdir())
        assert len(HandDataset(out / "converted" / name)) > 0
    assert validate(out / "converted").ok
    assert len(list((out / "wild").glob("*.jpg"))) == 4
    assert result.run_dir is not None and (result.run_dir / "metrics.csv").exists()
    assert ("set_total", "train") in calls and totals[-1] > 10
    trained = dict((stage, summary) for stage, _, summary in result.stages)["train"]
    assert int(trained.split()[0]) > 10  # more steps than the timing's ten
    assert any(result.run_dir.glob("checkpoints/*/model.safetensors"))
    assert set(result.metrics["datasets"]) == set(SOURCE_FORMATS)
    assert result.pseudo_dir is not None
    pseudo = HandDataset(result.pseudo_dir)
    assert len(pseudo) > 0 and all(s.review_status == "pending" for s in pseudo)
    assert validate(result.pseudo_dir).ok
    assert result.overlays_dir is not None and len(list(result.overlays_dir.glob("*.png"))) == 4
    assert result.review_name == "hiu-demo-demo"
    assert result.hand_model.startswith("procedural")


def test_demo_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    from hiu_data.errors import HiuError
    from hiu_model.demo import DemoOptions, run_demo

    (tmp_path / "something").write_text("x")
    with pytest.raises(HiuError, match="not empty"):
        run_demo(DemoOptions(out=tmp_path))


def test_each_demo_folder_has_its_own_review_dataset(tmp_path: Path) -> None:
    from hiu_model.demo import review_name_for

    assert review_name_for(tmp_path / "hiu-demo") == "hiu-demo"
    assert review_name_for(tmp_path / "run 2") == "hiu-demo-run_2"
    assert review_name_for(Path(".")) == review_name_for(Path.cwd())


def test_no_pseudo_labels_to_review_is_a_typed_error_even_under_python_o(tmp_path: Path) -> None:
    # An assert here vanished under python -O and push() then failed on None.
    from hiu_data.errors import HiuError
    from hiu_model.demo import DemoResult, _review_source

    with pytest.raises(HiuError, match="pseudo: the pseudo-label stage wrote no dataset"):
        _review_source(DemoResult(out=tmp_path))
    assert _review_source(DemoResult(out=tmp_path, pseudo_dir=tmp_path / "pseudo" / "pseudo")) == tmp_path / "pseudo" / "pseudo"
