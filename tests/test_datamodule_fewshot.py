"""FewShotMotionDataModule on tiny real files (and an in-memory motion world)."""

import sys
import types
import warnings

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from miva_lightning.config import CONFIG_DIR
from miva_lightning.data.fewshot import FewShotMotionDataModule
from miva_lightning.data.readers import ClipTooShortError, UnsupportedFormatError, VideoReadError
from miva_lightning.data.video_io import write_frames, write_video


def numbered_clip(frames, height=24, width=32, seed=0):
    """Frame t has mean level ~ t/frames plus a fixed random texture (so flips are visible)."""
    texture = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 0.2
    levels = torch.arange(frames).float().view(-1, 1, 1, 1) / frames * 0.7
    return (texture + levels).clamp(0, 1)


@pytest.fixture(scope="module")
def lamp_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lamp")
    for index in range(6):
        write_video(root / "waterfall" / f"clip{index}.mp4", numbered_clip(20, seed=index))
    write_video(root / "rain" / "a.gif", numbered_clip(12, seed=10))
    write_frames(root / "rain" / "b", numbered_clip(12, seed=11))
    write_video(root / "rain" / "c.webm", numbered_clip(12, seed=12))
    (root / "rain" / "captions.txt").write_text("sidecar files are ignored")
    return root


def make(root, **overrides):
    options = dict(root=str(root), motion="waterfall", num_frames=4, stride=2, height=16, width=16, batch_size=2, seed=0)
    options.update(overrides)
    datamodule = FewShotMotionDataModule(**options)
    datamodule.setup("fit")
    return datamodule


def epoch_batches(datamodule, epoch):
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_batches_have_the_documented_layout(lamp_root):
    datamodule = make(lamp_root, motion=["waterfall", "rain"], batch_size=3)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["video"].shape == (3, 4, 3, 16, 16) and batch["video"].dtype == torch.float32
    assert 0 <= batch["video"].min() and batch["video"].max() <= 1
    assert len(batch["motion"]) == len(batch["path"]) == len(batch["caption"]) == 3
    assert set(datamodule.clip_paths()) >= {str(lamp_root / "rain" / "b"), str(lamp_root / "rain" / "a.gif")}
    assert len(datamodule.train_set) == 9


def test_same_seed_same_batches_different_seed_different(lamp_root):
    first, second = make(lamp_root, flip_p=0.5), make(lamp_root, flip_p=0.5)
    other = make(lamp_root, flip_p=0.5, seed=1)
    for epoch in (0, 3):
        for a, b in zip(epoch_batches(first, epoch), epoch_batches(second, epoch)):
            assert torch.equal(a["video"], b["video"]) and a["path"] == b["path"]
    videos = torch.cat([b["video"] for b in epoch_batches(first, 0)])
    assert not torch.equal(videos, torch.cat([b["video"] for b in epoch_batches(other, 0)]))


def test_each_epoch_draws_fresh_starts_and_flips(lamp_root):
    dataset = make(lamp_root, flip_p=0.5).train_set
    draws = {epoch: [dataset[(index, epoch)]["video"] for index in range(len(dataset))] for epoch in range(4)}
    for epoch in (1, 2, 3):
        assert any(not torch.equal(a, b) for a, b in zip(draws[0], draws[epoch]))
    means = {round(video[0].mean().item(), 2) for epoch in draws for video in draws[epoch]}
    assert len(means) > 3  # several different start frames were drawn


def test_validation_starts_at_frame_zero_without_flips(lamp_root):
    datamodule = make(lamp_root, flip_p=1.0, num_val=2)
    item = datamodule.val_set[(0, 5)]
    reread = make(lamp_root, flip_p=0.0, num_val=2).val_set[(0, 0)]
    assert torch.equal(item["video"], reread["video"])
    expected_levels = torch.tensor([0, 2, 4, 6]) / 20 * 0.7 + 0.1
    assert torch.allclose(item["video"].mean(dim=(1, 2, 3)), expected_levels, atol=0.03)


def test_flip_mirrors_the_clip(lamp_root):
    flipped = make(lamp_root, flip_p=1.0).train_set[(0, 0)]["video"]
    plain = make(lamp_root, flip_p=0.0).train_set[(0, 0)]["video"]
    assert torch.equal(flipped, plain.flip(-1))


def test_split_is_by_clip_disjoint_and_max_clips_applies(lamp_root):
    datamodule = make(lamp_root, num_val=2, max_clips=3)
    train, val = set(datamodule.clip_paths("train")), set(datamodule.clip_paths("val"))
    assert len(train) == 3 and len(val) == 2 and not train & val
    assert len(make(lamp_root, val_fraction=0.5).clip_paths("val")) == 3
    assert make(lamp_root).val_dataloader() == []


def test_uncached_reads_match_cached(lamp_root):
    cached, uncached = make(lamp_root, cache=True), make(lamp_root, cache=False)
    a, b = cached.train_set[(1, 2)]["video"], uncached.train_set[(1, 2)]["video"]
    assert (a - b).abs().max() <= 1 / 255 + 1e-6  # the cache keeps uint8


def test_missing_motion_and_empty_motion_list_what_was_found(lamp_root, tmp_path):
    with pytest.raises(VideoReadError, match=r"no folder for motion 'fire'.*\['rain', 'waterfall'\]"):
        make(lamp_root, motion="fire")
    (tmp_path / "snow").mkdir()
    (tmp_path / "snow" / "readme.md").write_text("x")
    with pytest.raises(VideoReadError, match=r"no clips for motion 'snow'.*\.mp4.*found: \['readme.md'\]"):
        make(tmp_path, motion="snow")
    with pytest.raises(VideoReadError, match="data root does not exist"):
        make(tmp_path / "nowhere")


def test_unsupported_files_raise_or_are_skipped(lamp_root, tmp_path):
    write_video(tmp_path / "pan" / "ok.mp4", numbered_clip(8))
    (tmp_path / "pan" / "clip.flv").write_bytes(b"flv")
    with pytest.raises(UnsupportedFormatError, match=r"clip\.flv.*'\.flv'.*\.mp4"):
        make(tmp_path, motion="pan")
    with pytest.warns(UserWarning, match="clip.flv"):
        assert make(tmp_path, motion="pan", on_error="skip").clip_paths() == [str(tmp_path / "pan" / "ok.mp4")]


def test_short_and_corrupt_clips_raise_or_are_skipped(tmp_path):
    # shrink_stride=False: a clip too short for the stride is refused like one too short for num_frames
    write_video(tmp_path / "pan" / "long.mp4", numbered_clip(10))
    write_video(tmp_path / "pan" / "short.mp4", numbered_clip(5))
    with pytest.raises(ClipTooShortError, match=r"short\.mp4: clip has 5 frames.*needs 7.*num_frames <= 3 at stride 2"):
        make(tmp_path, motion="pan", shrink_stride=False)
    (tmp_path / "pan" / "broken.mp4").write_bytes(b"\x00" * 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datamodule = make(tmp_path, motion="pan", on_error="skip", shrink_stride=False)
    assert datamodule.clip_paths() == [str(tmp_path / "pan" / "long.mp4")]
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.mp4" in messages and "short.mp4" in messages
    (tmp_path / "pan" / "long.mp4").unlink()
    with pytest.raises(ValueError, match="every training clip of motion 'pan' was skipped"):
        make(tmp_path, motion="pan", on_error="skip", shrink_stride=False)


@pytest.mark.parametrize("cache", [True, False])
def test_a_clip_too_short_for_the_stride_is_read_at_the_largest_stride_that_fits(tmp_path, cache):
    """num_frames=4 at stride 3 needs 10 frames: a 7-frame clip is read at stride 2 ((7 - 1) // 3), with one
    warning naming it; a 12-frame clip keeps stride 3; a 3-frame clip (< num_frames) is still refused."""
    short, long = tmp_path / "m" / "short", tmp_path / "m" / "long"
    write_frames(short, numbered_clip(7, height=16, width=16))  # frame t has mean ~ t / 7 * 0.7 (+ texture)
    write_frames(long, numbered_clip(12, height=16, width=16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datamodule = make(tmp_path, motion="m", num_frames=4, stride=3, cache=cache)
    shrunk = [str(w.message) for w in caught if "reading it at stride" in str(w.message)]
    assert len(shrunk) == 1 and shrunk[0].startswith(f"{short}: clip has 7 frames") and shrunk[0].endswith("stride 2")
    strides = dict(zip(datamodule.clip_paths(), datamodule.train_set.strides))
    assert strides == {str(short): 2, str(long): 3}
    with warnings.catch_warnings(record=True) as caught:  # reading items warns no more
        warnings.simplefilter("always")
        items = {datamodule.train_set[(i, 0)]["path"]: datamodule.train_set[(i, 0)]["video"] for i in range(2)}
    assert not caught
    for path, step in ((short, 2 * 0.7 / 7), (long, 3 * 0.7 / 12)):  # mean level between read frames
        video = items[str(path)]
        assert video.shape == (4, 3, 16, 16)
        torch.testing.assert_close(video.mean(dim=(1, 2, 3)).diff(), torch.full((3,), step), atol=0.02, rtol=0)

    write_frames(tmp_path / "m" / "tiny", numbered_clip(3, height=16, width=16))
    with pytest.raises(ClipTooShortError, match=r"tiny: clip has 3 frames.*needs 10"):
        make(tmp_path, motion="m", num_frames=4, stride=3, cache=cache)
    with pytest.warns(UserWarning, match=r"skipping clip: .*tiny: clip has 3 frames"):
        skipped = make(tmp_path, motion="m", num_frames=4, stride=3, cache=cache, on_error="skip")
    assert sorted(skipped.clip_paths()) == sorted([str(long), str(short)])


def test_non_square_sources_are_resized_and_centre_cropped(tmp_path):
    clip = torch.zeros(4, 3, 16, 48)
    clip[..., 16:32] = 1.0  # the central third is white
    write_frames(tmp_path / "m" / "wide", clip)
    video = make(tmp_path, motion="m", num_frames=2, stride=1, height=16, width=16).train_set[(0, 0)]["video"]
    assert video.shape == (2, 3, 16, 16) and video.min() > 0.99


class FakeWorld(torch.utils.data.Dataset):
    """Stands in for miva_lightning.world.MotionWorldDataset (same constructor, same items)."""

    def __init__(self, motions, clips_per_motion, size, num_frames, split, seed):
        self.items = [(m, i) for m in motions for i in range(clips_per_motion)]
        self.size, self.num_frames, self.seed = size, num_frames, seed

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        motion, clip = self.items[index]
        return {"video": numbered_clip(self.num_frames, self.size, self.size, seed=self.seed * 100 + clip), "motion": motion}


def test_motion_world_source_gives_the_same_batch_format(monkeypatch):
    monkeypatch.setitem(sys.modules, "miva_lightning.world", types.SimpleNamespace(MotionWorldDataset=FakeWorld))
    datamodule = FewShotMotionDataModule(source="motion_world", motion="waterfall", num_frames=4, stride=2, height=16, width=16, batch_size=5, world_clips_per_motion=12, world_num_frames=10, max_clips=10, num_val=2)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["video"].shape == (5, 4, 3, 16, 16) and batch["motion"] == ["waterfall"] * 5
    assert batch["path"][0].startswith("motion_world://train/waterfall/")
    assert len(datamodule.train_set) == 10 and len(datamodule.val_set) == 2
    uncached = FewShotMotionDataModule(source="motion_world", motion="waterfall", num_frames=4, stride=2, height=16, width=16, world_num_frames=10, cache=False, num_val=2, world_clips_per_motion=12)
    uncached.setup()
    assert (uncached.train_set[(3, 1)]["video"] - datamodule.train_set[(3, 1)]["video"]).abs().max() <= 1 / 255 + 1e-6


def test_real_motion_world_if_available():
    world = pytest.importorskip("miva_lightning.world")
    if not hasattr(world, "MotionWorldDataset"):
        pytest.skip("miva_lightning.world.MotionWorldDataset is not there yet")
    datamodule = FewShotMotionDataModule(source="motion_world", motion="waterfall", num_frames=4, height=16, width=16, batch_size=2, world_clips_per_motion=3, max_clips=10)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["video"].shape == (2, 4, 3, 16, 16) and batch["motion"] == ["waterfall"] * 2
    assert batch["caption"][0] != "waterfall" and batch["path"][0].startswith("motion_world://train/waterfall/scene")
    direct = world.MotionWorldDataset(["waterfall"], clips_per_motion=3, size=16, num_frames=4, split="train", seed=0)
    assert any((datamodule.train_set[(0, 0)]["video"] - direct[i]["video"]).abs().max() <= 1 / 255 for i in range(3))


@pytest.mark.parametrize("name", ["fewshot_folder", "motion_world_fewshot"])
def test_hydra_configs_instantiate(name, lamp_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "miva_lightning.world", types.SimpleNamespace(MotionWorldDataset=FakeWorld))
    cfg = OmegaConf.create({"paths": {"data": str(lamp_root.parent)}, "data": OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml")})
    cfg.data.root = str(lamp_root) if name == "fewshot_folder" else None
    datamodule = instantiate(cfg.data, height=16, width=16)
    assert isinstance(datamodule, FewShotMotionDataModule)
    datamodule.setup("fit")
    assert next(iter(datamodule.train_dataloader()))["video"].shape[1:] == (8, 3, 16, 16)


class RecordingModule:
    """A minimal LightningModule that keeps the videos it was trained on, per epoch."""

    @staticmethod
    def build():
        import lightning as L

        class Recorder(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(()))
                self.seen = {}

            def training_step(self, batch, batch_idx):
                seen = self.seen.setdefault(self.current_epoch, {})
                seen.update(zip(batch["path"], batch["video"].clone()))
                return (self.weight - batch["video"].mean()) ** 2

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.0)

        return Recorder()


def fit_two_epochs(datamodule):
    import lightning as L

    module = RecordingModule.build()
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    return [torch.stack([video for _, video in sorted(module.seen[epoch].items())]) for epoch in (0, 1)]  # by clip


@pytest.mark.parametrize("num_workers", [0, 1])
def test_lightning_fit_sees_fresh_augmentation_each_epoch(lamp_root, num_workers):
    epochs = fit_two_epochs(make(lamp_root, flip_p=0.5, num_workers=num_workers, batch_size=6))
    repeat = fit_two_epochs(make(lamp_root, flip_p=0.5, num_workers=num_workers, batch_size=6))
    assert epochs[0].shape[0] == 6  # every clip once per epoch
    assert not torch.equal(epochs[0], epochs[1])  # the same clips got new starts/flips: set_epoch reached the workers
    assert all(torch.equal(a, b) for a, b in zip(epochs, repeat))  # and the run is reproducible


def test_epoch_sampler_shards_ranks_disjointly_and_reshuffles_per_epoch():
    from miva_lightning.data.clip_dataset import EpochSampler

    data = list(range(10))
    ranks = [EpochSampler(data, shuffle=True, seed=3, num_replicas=2, rank=rank) for rank in (0, 1)]
    keys = [list(sampler) for sampler in ranks]
    assert {epoch for keys_ in keys for _, epoch in keys_} == {0}
    assert sorted(index for keys_ in keys for index, _ in keys_) == data  # disjoint and complete
    ranks[0].set_epoch(1)
    moved = list(ranks[0])
    assert {epoch for _, epoch in moved} == {1} and [i for i, _ in moved] != [i for i, _ in keys[0]]
