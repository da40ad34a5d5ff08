"""`miva-eval` on tiny generated folders: JSON and CSV state what was measured; NaN + reason when unavailable."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from miva_lightning.pipelines.evaluate import run
from miva_lightning.config import compose
from miva_lightning.data import write_frames, write_video


def _folder(path, videos, as_mp4=False):
    path.mkdir()
    for i, video in enumerate(videos):
        if as_mp4:
            write_video(path / f"clip{i}.mp4", video)
        else:
            write_frames(path / f"clip{i}", video)
    return path


def _clips(n, seed, brightness=1.0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(8, 3, 16, 16, generator=generator) * brightness) for _ in range(n)]


def test_eval_writes_json_and_csv_with_counts_sizes_and_reasons(tmp_path):
    reference = _folder(tmp_path / "reference", _clips(4, seed=0))
    generated = _folder(tmp_path / "generated", _clips(3, seed=1, brightness=0.5))
    (generated / "clip0.txt").write_text("camera pans left")
    cfg = compose("eval", [
        f"generated_dir={generated}", f"reference_dir={reference}", f"output={tmp_path / 'out' / 'scores'}",
        "num_frames=8", "metrics=randproj", f"+metrics.fvd_i3d.weights_path={tmp_path / 'none.pt'}",
    ])  # fmt: skip
    with pytest.warns(UserWarning, match="I3D weights not found"):
        run(cfg)
    report = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert (report["n_reference"], report["n_generated"], report["num_frames"]) == (4, 3, 8)
    assert report["resolution_hw"] == [16, 16]
    assert report["metrics"]["fd_randproj"]["value"] > 0
    assert report["metrics"]["fvd_i3d"]["value"] is None
    assert "I3D weights not found" in report["metrics"]["fvd_i3d"]["unavailable_reason"]
    rows = {row["metric"]: row for row in csv.DictReader((tmp_path / "out" / "scores.csv").open())}
    assert set(rows) == {"fd_randproj", "kvd_randproj", "fvd_i3d"}
    assert rows["fvd_i3d"]["value"] == "nan" and rows["fvd_i3d"]["available"] == "False"
    assert rows["fd_randproj"]["feature_network"].startswith("randproj") and rows["fd_randproj"]["frames"] == "8"
    assert not list((tmp_path / "out").glob(".*partial*"))  # atomic writes left nothing behind


def test_eval_of_a_folder_against_itself_is_near_zero(tmp_path):
    clips = _folder(tmp_path / "clips", _clips(5, seed=2), as_mp4=True)
    cfg = compose("eval", [
        f"generated_dir={clips}", f"reference_dir={clips}", f"output={tmp_path / 'self'}", "num_frames=8",
        "metrics=randproj",
    ])  # fmt: skip
    report = run(cfg)
    assert abs(report["metrics"]["fd_randproj"]["value"]) < 1e-6


def test_eval_rejects_an_empty_folder_with_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = compose("eval", [f"generated_dir={tmp_path / 'empty'}", f"reference_dir={tmp_path / 'empty'}"])
    with pytest.raises(FileNotFoundError, match="no clips"):
        run(cfg)


@pytest.mark.slow
def test_miva_eval_console_entry_point(tmp_path):
    reference = _folder(tmp_path / "reference", _clips(3, seed=0))
    generated = _folder(tmp_path / "generated", _clips(3, seed=1))
    done = subprocess.run(
        [sys.executable, "-m", "miva_lightning.cli.evaluate", f"generated_dir={generated}",
         f"reference_dir={reference}", "num_frames=8", "metrics=randproj", f"output={tmp_path / 'cli'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fd_randproj" in done.stdout and (tmp_path / "cli.json").is_file()
