"""Readers: each backend reads back what write_video wrote; bad files give errors naming the file."""

import time

import av
import numpy as np
import pytest
import torch
from PIL import Image

from miva_lightning.data import video_io
from miva_lightning.data.readers import (
    ClipTooShortError,
    DecodeTimeoutError,
    UnsupportedFormatError,
    VideoReadError,
    VideoTooLargeError,
    decord_available,
    decord_reader,
)
from miva_lightning.data.video_io import count_frames, read_video, write_frames, write_video

needs_decord = pytest.mark.skipif(not decord_available(), reason="decord is not installed")


def brightness_ramp(frames=12, height=32, width=32):
    """Frame t is a horizontal gradient plus a per-frame level: smooth (codec friendly) and
    each frame identifiable by its mean."""
    xs = torch.linspace(0, 0.3, width).expand(height, width)
    clip = torch.stack([(xs + 0.05 * t).clamp(0, 1).expand(3, height, width) for t in range(frames)])
    clip[:, 1] *= 0.8  # not grey
    return clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    clip = brightness_ramp()
    return {
        "clip": clip,
        "mp4": write_video(folder / "ramp.mp4", clip),
        "webm": write_video(folder / "ramp.webm", clip),
        "gif": write_video(folder / "ramp.gif", clip),
        "frames": write_frames(folder / "ramp_frames", clip),
        "folder": folder,
    }


@pytest.mark.parametrize("backend", ["pyav", pytest.param("decord", marks=needs_decord), "auto"])
@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_video_backends_read_back_with_tolerance(clips, backend, suffix):
    video = read_video(clips[suffix], backend=backend)
    assert video.dtype == torch.float32 and video.shape == (12, 3, 32, 32)
    assert 0 <= video.min() and video.max() <= 1
    assert (video - clips["clip"]).abs().mean() < 0.02


def test_gif_and_frames_read_back_almost_exactly(clips):
    assert (read_video(clips["gif"], backend="gif") - clips["clip"]).abs().max() < 0.02
    assert (read_video(clips["frames"], backend="frames") - clips["clip"]).abs().max() <= 0.5 / 255 + 1e-6


@needs_decord
def test_decord_and_pyav_agree(clips):
    by_decord = read_video(clips["mp4"], backend="decord", num_frames=4, stride=3, start=1)
    by_pyav = read_video(clips["mp4"], backend="pyav", num_frames=4, stride=3, start=1)
    assert (by_decord - by_pyav).abs().mean() < 2 / 255


@pytest.mark.parametrize("kind", ["mp4", "gif", "frames"])
def test_start_and_stride_pick_the_right_frames(clips, kind):
    video = read_video(clips[kind], num_frames=3, stride=4, start=2)
    assert video.shape[0] == 3
    expected = clips["clip"][[2, 6, 10]].mean(dim=(1, 2, 3))
    assert torch.allclose(video.mean(dim=(1, 2, 3)), expected, atol=0.01)


def test_num_frames_none_reads_all_frames_from_start(clips):
    assert read_video(clips["gif"], start=3, stride=2).shape[0] == len(range(3, 12, 2))


@pytest.mark.parametrize("kind", ["mp4", "webm", "gif", "frames"])
def test_count_frames(clips, kind):
    assert count_frames(clips[kind]) == 12


def test_gif_keeps_identical_consecutive_frames(tmp_path):
    clip = brightness_ramp(frames=6)
    clip[2] = clip[1]
    clip[3] = clip[1]  # Pillow stores frames 1-3 as one frame with triple duration
    path = write_video(tmp_path / "still.gif", clip, fps=8)
    assert Image.open(path).n_frames == 4
    video = read_video(path)
    assert video.shape[0] == 6 and count_frames(path) == 6
    assert torch.allclose(video[3], video[1])


def test_auto_falls_back_to_pyav_when_decord_fails(clips, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("decord exploded")

    monkeypatch.setattr(video_io, "read_decord", broken)
    video = read_video(clips["mp4"], backend="auto", num_frames=2)
    assert video.shape == (2, 3, 32, 32)


@needs_decord
def test_hanging_decord_times_out_and_auto_falls_back(clips, monkeypatch):
    real_open = decord_reader._open

    def slow_open(*args, **kwargs):
        time.sleep(3)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(decord_reader, "_open", slow_open)
    started = time.monotonic()
    with pytest.raises(DecodeTimeoutError, match="backend='pyav'"):
        read_video(clips["mp4"], backend="decord", timeout_s=0.2)
    assert read_video(clips["mp4"], backend="auto", timeout_s=0.2).shape[0] == 12
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("backend", ["auto", "pyav", pytest.param("decord", marks=needs_decord)])
def test_random_bytes_named_mp4_is_an_error_naming_the_file(tmp_path, backend):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        read_video(path, backend=backend)
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        count_frames(path)


def test_truncated_mp4_is_an_error_naming_the_file(clips, tmp_path):
    data = clips["mp4"].read_bytes()  # the index (moov) is written last, so half a file cannot open
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="truncated.mp4.*(corrupt|not a readable)"):
        read_video(path)


def test_stream_damaged_midway_gives_the_frames_before_with_a_warning(tmp_path):
    path = tmp_path / "faststart.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:  # index first
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(40):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning, match="damaged.mp4.*damaged after frame"):
        count = count_frames(damaged)
    assert 0 < count < 40
    with pytest.warns(UserWarning):
        assert read_video(damaged, backend="pyav").shape[0] == count
    with pytest.warns(UserWarning), pytest.raises(ClipTooShortError, match=f"has {count} frames"):
        read_video(damaged, backend="auto", num_frames=40)


def test_short_clip_says_how_many_frames_and_what_fits(clips):
    with pytest.raises(ClipTooShortError, match=r"has 12 frames.*num_frames=8 with stride=2.*needs 15.*num_frames <= 6 at stride 2.*stride <= 1 at num_frames 8") as info:
        read_video(clips["mp4"], num_frames=8, stride=2)
    assert info.value.num_available == 12


def test_empty_folder_and_unsupported_extension_and_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(VideoReadError, match=r"empty.*no frame images.*\.png.*notes\.txt"):
        read_video(tmp_path / "empty")
    (tmp_path / "clip.flv").write_bytes(b"x")
    with pytest.raises(UnsupportedFormatError, match=r"clip\.flv.*'\.flv'.*\.mp4.*\.gif"):
        read_video(tmp_path / "clip.flv")
    with pytest.raises(VideoReadError, match="nothing.mp4: no such file"):
        read_video(tmp_path / "nothing.mp4")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        read_video(tmp_path / "clip.flv", stride=0)


def test_frames_sort_naturally(tmp_path):
    for index in [1, 2, 10]:  # lexical order would put 10 before 2
        Image.fromarray(np.full((4, 4, 3), index * 20, np.uint8)).save(tmp_path / f"frame{index}.png")
    assert read_video(tmp_path)[:, 0, 0, 0].mul(255).round().tolist() == [20, 40, 200]


def test_grey_16bit_and_alpha_frames(tmp_path):
    Image.fromarray(np.full((4, 4), 128, np.uint8), mode="L").save(tmp_path / "0.png")
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "1.png")  # 16-bit grey PNG
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[:2, ..., 3] = 0  # top half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "2.png")
    video = read_video(tmp_path)
    assert video.shape == (3, 3, 4, 4)
    assert torch.allclose(video[0], torch.full((3, 4, 4), 128 / 255))
    assert torch.allclose(video[1], torch.full((3, 4, 4), 32768 / 65535), atol=1e-6)
    assert torch.allclose(video[2, 0, 2:], torch.full((2, 4), 200 / 255)) and video[2, :, :2].abs().max() == 0


def test_frames_of_different_sizes_are_refused(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "0.png")
    Image.new("RGB", (6, 4)).save(tmp_path / "1.png")
    with pytest.raises(VideoReadError, match=r"1\.png.*6x4.*4x4"):
        read_video(tmp_path)


def test_grey_video_reads_as_three_equal_channels(tmp_path):
    path = tmp_path / "grey.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=8)  # lossless, stores gray directly
        stream.width = stream.height = 8
        stream.pix_fmt = "gray"
        for level in (10, 100):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((8, 8), level, np.uint8), format="gray")))
        container.mux(stream.encode())
    video = read_video(path, backend="pyav")
    assert video.shape == (2, 3, 8, 8)
    assert torch.allclose(video[:, 0], video[:, 2]) and abs(video[1, 0, 0, 0].item() - 100 / 255) < 0.01


@pytest.mark.parametrize("kind", ["mp4", "gif", "frames", pytest.param("decord", marks=needs_decord)])
def test_large_frames_downscale_or_refuse(clips, kind):
    path, backend = (clips["mp4"], "decord") if kind == "decord" else (clips[kind], "auto")
    small = read_video(path, backend=backend, num_frames=2, max_pixels=16 * 16)
    assert small.shape == (2, 3, 16, 16)
    with pytest.raises(VideoTooLargeError, match=r"32x32 = 1024 pixels.*max_pixels=256"):
        read_video(path, backend=backend, num_frames=2, max_pixels=16 * 16, oversize="error")
