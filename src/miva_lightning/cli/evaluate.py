"""`miva-eval`: score a folder of generated videos against a folder of reference clips.

    miva-eval generated_dir=outputs/animate/... reference_dir=data/clips/pan_left [metrics=distances]

Reads every clip of both folders (video files, GIFs, frame folders) with `data.video_io.read_video`:
the first `num_frames` frames at `stride`, optionally resized to `resolution`. Prompts come from a
`prompts` file (JSON {stem: prompt}) or from a `<stem>.txt` beside each generated video; input images
from `images_dir/<stem>.png` (else frame 1 of the generated video). Writes `<output>.json` and
`<output>.csv` atomically. Every metric row states n real / generated, frames, resolution, the feature
network and its weights' SHA-256; an unavailable metric is NaN (null in JSON) with the reason.
The work is `miva_lightning.pipelines.evaluate.run`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.pipelines.evaluate import run


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval", version_base="1.3")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    report = run(cfg)
    for name, row in report["metrics"].items():
        value = "nan" if row["value"] is None else f"{row['value']:.4f}"
        reason = f"  ({row['unavailable_reason']})" if row.get("unavailable_reason") else ""
        print(f"{name:28s} {value}{reason}")
    print(f"n_reference={report['n_reference']} n_generated={report['n_generated']} frames={report['num_frames']} "
          f"size={report['resolution_hw']} -> {Path(cfg.output).with_suffix('.json')}")  # fmt: skip


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
