"""write_video: every writable format produces a file PyAV/Pillow read back at the written size."""

import av
import numpy as np
import pytest
import torch
from PIL import Image

from miva_lightning.data.video_io import write_video


def _decode_all(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _gradient_clip(frames=6, height=32, width=32):
    """A smooth moving ramp: lossy codecs reproduce it closely."""
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    planes = lambda t: [(xs + 0.05 * t).remainder(1).expand(height, width), ys.expand(height, width), torch.full((height, width), 0.5)]
    return torch.stack([torch.stack(planes(t)) for t in range(frames)])


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mov"])
def test_pyav_formats_round_trip_within_tolerance(tmp_path, suffix):
    clip = _gradient_clip()
    path = write_video(tmp_path / f"clip{suffix}", clip, fps=8)
    frames = _decode_all(path)
    assert frames.shape == (6, 32, 32, 3)
    error = np.abs(frames.astype(float) / 255 - clip.permute(0, 2, 3, 1).numpy()).mean()
    assert error < 0.03


def test_odd_sizes_keep_their_exact_size(tmp_path):
    path = write_video(tmp_path / "odd.mp4", torch.rand(3, 3, 31, 33))
    assert _decode_all(path).shape == (3, 31, 33, 3)


def test_uint8_fhwc_numpy_is_accepted(tmp_path):
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[:, :, :8] = 200
    decoded = _decode_all(write_video(tmp_path / "u8.mp4", frames))
    assert abs(int(decoded[0, 8, 2, 0]) - 200) <= 3 and decoded[0, 8, 13, 0] <= 3


def test_gif_is_palette_exact_for_few_colours(tmp_path):
    clip = torch.zeros(4, 3, 16, 16)
    for t in range(4):
        clip[t, 0, :, t * 4 : t * 4 + 4] = 1.0
    path = write_video(tmp_path / "clip.gif", clip, fps=10)
    image = Image.open(path)
    assert image.n_frames == 4
    image.seek(2)
    frame = np.asarray(image.convert("RGB"))
    assert frame[0, 9, 0] == 255 and frame[0, 1, 0] == 0


def test_write_is_atomic_and_leaves_no_partial_file_on_error(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_video(tmp_path / "bad.mp4", torch.full((2, 3, 8, 8), float("nan")))
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_say_what_to_change(tmp_path):
    with pytest.raises(ValueError, match=r"\[-1, 1\].*\(video \+ 1\) / 2"):
        write_video(tmp_path / "a.mp4", torch.rand(2, 3, 8, 8) * 2 - 1)
    with pytest.raises(ValueError, match="unsupported suffix '.xyz'.*.mp4"):
        write_video(tmp_path / "a.xyz", torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        write_video(tmp_path / "a.mp4", torch.rand(2, 5, 8, 8))
