"""on_error with real-world bad files: skip takes the next usable clip, raise names every bad file."""

import warnings

import pytest
import torch

from miva_lightning.data import VideoReadError, read_video, write_video
from miva_lightning.data.clip_sources import folder_clip_entries, shuffled_by_motion
from miva_lightning.data.fewshot import FewShotMotionDataModule
from miva_lightning.data.readers import decord_available
from miva_lightning.data.video_io import count_frames

BAD = ("empty.mp4", "text.mp4", "truncated.mp4", "oneframe.mp4")


def clip(frames, seed, size=16):
    return torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """<root>/pan/: 10 good 10-frame clips and 4 bad ones (the dataset needs 8 frames)."""
    root = tmp_path_factory.mktemp("lamp")
    folder = root / "pan"
    for index in range(10):
        write_video(folder / f"clip{index:02d}.mp4", clip(10, index))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video, only named like one\n")
    whole = (folder / "clip00.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # the index (moov) is at the end
    write_video(folder / "oneframe.mp4", clip(1, 99))
    return root


def make(root, **overrides):
    options = dict(root=str(root), motion="pan", num_frames=8, height=16, width=16, seed=0, max_clips=10)
    options.update(overrides)
    datamodule = FewShotMotionDataModule(**options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datamodule.setup("fit")
    return datamodule, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def good_paths(root):
    return {str(root / "pan" / f"clip{index:02d}.mp4") for index in range(10)}


def test_skip_takes_the_next_good_clip_and_names_each_bad_file(root):
    datamodule, messages = make(root, on_error="skip")
    assert set(datamodule.clip_paths()) == good_paths(root)  # all 10 good clips, none lost
    assert len(messages) == 4 and all(message.startswith("skipping clip: ") for message in messages)
    for name in BAD:
        assert sum(name in message for message in messages) == 1, (name, messages)


def test_validation_clips_are_good_clips_too(root):
    datamodule, _ = make(root, on_error="skip", max_clips=8, num_val=2)
    train, val = datamodule.clip_paths("train"), datamodule.clip_paths("val")
    assert len(train) == 8 and len(val) == 2 and set(train) | set(val) == good_paths(root)


def test_raise_names_every_bad_file_in_one_error(root):
    with pytest.raises(VideoReadError, match="4 clips cannot be used") as info:
        make(root, on_error="raise")
    message = str(info.value)
    assert all(name in message for name in BAD) and "on_error=skip" in message
    assert not any(path.split("/")[-1] in message for path in good_paths(root))


def test_fewer_good_clips_than_max_clips_says_how_many_and_why(root):
    datamodule, messages = make(root, on_error="skip", max_clips=12)
    assert len(datamodule.train_set) == 10
    short = [message for message in messages if "usable training clips" in message]
    assert len(short) == 1 and "found 10 usable training clips of the 12 wanted" in short[0]
    assert "4 of its 14 clips cannot be used" in short[0]
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["video"].shape == (1, 8, 3, 16, 16)


def test_same_seed_same_clips_tried_in_the_seeded_order(root):
    first, _ = make(root, on_error="skip", max_clips=5)
    again, _ = make(root, on_error="skip", max_clips=5)
    other, _ = make(root, on_error="skip", max_clips=5, seed=1)
    assert first.clip_paths() == again.clip_paths() != other.clip_paths()
    order = [entry.path for entry in shuffled_by_motion(folder_clip_entries(root, ["pan"]), 0)["pan"]]
    assert first.clip_paths() == [path for path in order if path in good_paths(root)][:5]


@pytest.fixture
def decord_cannot_decode_damaged(monkeypatch):
    """decord opens `damaged.mp4` but fails on its frames, as it does on some real files."""
    decord = pytest.importorskip("decord")
    real = decord.VideoReader

    class FramesFail:
        def __init__(self, reader):
            self.reader = reader

        def __len__(self):
            return len(self.reader)

        def __getitem__(self, index):
            raise decord.DECORDError("[00:00:00] video_reader.cc: Check failed: cannot decode frame")

        def get_batch(self, indices):
            raise decord.DECORDError("[00:00:00] video_reader.cc: Check failed: cannot decode frame")

    def video_reader(uri, *args, **kwargs):
        reader = real(uri, *args, **kwargs)
        return FramesFail(reader) if uri.endswith("damaged.mp4") else reader

    monkeypatch.setattr(decord, "VideoReader", video_reader)
    return decord


@pytest.mark.skipif(not decord_available(), reason="decord is not installed")
@pytest.mark.parametrize("cache", [True, False])
def test_decord_failing_on_the_first_frame_is_a_video_read_error(tmp_path, decord_cannot_decode_damaged, cache):
    for index in range(3):  # 32 pixels: decord itself cannot decode 16x16 H.264 frames
        write_video(tmp_path / "pan" / f"clip{index}.mp4", clip(10, index, size=32))
    damaged = write_video(tmp_path / "pan" / "damaged.mp4", clip(10, 7, size=32))
    with pytest.raises(VideoReadError, match="damaged.mp4: decord failed to decode") as info:
        read_video(damaged, backend="decord")
    assert isinstance(info.value.__cause__, decord_cannot_decode_damaged.DECORDError)
    datamodule, messages = make(tmp_path, on_error="skip", backend="decord", cache=cache)
    assert len(datamodule.train_set) == 3 and str(damaged) not in datamodule.clip_paths()
    skipped = [message for message in messages if message.startswith("skipping clip: ")]
    assert len(skipped) == 1 and "damaged.mp4: decord failed to decode" in skipped[0]


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_truncated_gif_is_a_video_read_error_not_a_pillow_error(tmp_path, fraction):
    whole = write_video(tmp_path / "whole.gif", clip(8, 0)).read_bytes()
    path = tmp_path / "cut.gif"
    path.write_bytes(whole[: int(len(whole) * fraction)])  # Pillow raised IndexError / OSError here
    with pytest.raises(VideoReadError, match="cut.gif: not a readable GIF"):
        read_video(path)
    with pytest.raises(VideoReadError, match="cut.gif"):
        count_frames(path)
