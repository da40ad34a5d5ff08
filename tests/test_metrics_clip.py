"""CLIP-family metrics: plumbing with a seeded tiny random CLIP; missing weights give NaN, never a random net."""

import math
import warnings

import pytest
import torch

from miva_lightning.metrics import available_metrics, build_metric
from miva_lightning.metrics import clip as C
from miva_lightning.metrics import clip_encoder as E


@pytest.fixture(scope="module")
def encoder():
    return C.tiny_random_clip_encoder(seed=0)


def _video(b=2, f=4, size=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(b, f, 3, size, size, generator=generator)


def test_identical_frames_give_consistency_100(encoder):
    frame = _video(b=2, f=1)
    video = frame.expand(-1, 5, -1, -1, -1)
    for pairs in ("all", "consecutive"):
        metric = C.ClipFrameConsistency(encoder=encoder, pairs=pairs)
        metric.update({"generated": video})
        assert metric.compute().item() == pytest.approx(100.0, abs=1e-4)


def test_consistency_variants_differ_and_match_hand_computation(encoder):
    video = _video(b=1, f=4)
    embeddings = encoder.encode_images(video[0])
    cos = embeddings @ embeddings.T
    all_pairs = 100 * torch.stack([cos[i, j] for i in range(4) for j in range(i + 1, 4)]).mean()
    consecutive = 100 * torch.stack([cos[t, t + 1] for t in range(3)]).mean()
    metrics = {p: C.ClipFrameConsistency(encoder=encoder, pairs=p) for p in ("all", "consecutive")}
    for metric in metrics.values():
        metric.update({"generated": video})
    assert metrics["all"].compute().item() == pytest.approx(all_pairs.item(), rel=1e-5)
    assert metrics["consecutive"].compute().item() == pytest.approx(consecutive.item(), rel=1e-5)
    assert metrics["all"].name == "clip_plumbing_randinit_frame_consistency_all_pairs"
    assert metrics["consecutive"].name == "clip_plumbing_randinit_frame_consistency_consecutive"


def test_image_alignment_of_a_still_video_with_its_own_frame_is_100(encoder):
    images = _video(b=3, f=1)[:, 0]
    still = images[:, None].expand(-1, 4, -1, -1, -1)
    metric = C.ClipImageAlignment(encoder=encoder)
    metric.update({"generated": still, "images": images})
    assert metric.compute().item() == pytest.approx(100.0, abs=1e-4)
    other = C.ClipImageAlignment(encoder=encoder)
    other.update({"generated": _video(b=3, f=4, seed=5), "images": images})
    assert other.compute().item() < 99.0


def test_text_alignment_matches_hand_computation_and_streams(encoder):
    videos, prompts = _video(b=4, f=3), ["a cat", "camera pans left", "rain falls", "a still scene"]
    frames = encoder.encode_images(videos.flatten(0, 1)).view(4, 3, -1)
    texts = encoder.encode_texts(prompts)
    expected = (100 * torch.einsum("bfd,bd->bf", frames, texts).mean(1)).mean().item()
    whole, streamed = C.ClipTextAlignment(encoder=encoder), C.ClipTextAlignment(encoder=encoder)
    whole.update({"generated": videos, "prompts": prompts})
    for k in range(0, 4, 2):
        streamed.update({"generated": videos[k : k + 2], "prompts": prompts[k : k + 2]})
    assert whole.compute().item() == pytest.approx(expected, rel=1e-5)
    assert streamed.compute().item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="prompts"):
        whole.update({"generated": videos, "prompts": prompts[:2]})


def test_diversity_of_a_video_with_itself_is_100_and_of_different_videos_less(encoder):
    video = _video(b=1, f=3)
    same = C.ClipDiversity(encoder=encoder)
    same.update({"generated": video})
    same.update({"generated": video})
    assert same.compute().item() == pytest.approx(100.0, abs=1e-4)
    different = C.ClipDiversity(encoder=encoder)
    different.update({"generated": _video(b=3, f=3, seed=1)})
    assert different.compute().item() < 100.0
    assert different.describe()["n_videos"] == 3


def test_missing_weights_give_nan_and_exactly_one_warning(tmp_path):
    missing = tmp_path / "no_clip_here"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metric = C.CLIP_METRICS["clip_text_alignment"](clip_path=missing)
        metric.update({"generated": _video(), "prompts": ["a", "b"]})
        metric.update({"generated": _video(), "prompts": ["a", "b"]})
        value = metric.compute()
        C.CLIP_METRICS["clip_text_alignment"](clip_path=missing)  # same name + path: no second warning
    assert math.isnan(value.item())
    assert len([w for w in caught if "no CLIP weights" in str(w.message)]) == 1
    assert metric.describe()["available"] is False


def test_real_names_never_resolve_to_random_weights():
    registered = {name for name in available_metrics() if "clip" in name}
    assert registered == set(C.CLIP_METRICS) | set(C.CLIP_PLUMBING_METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in C.CLIP_METRICS:
            metric = build_metric(name)
            assert metric.name == name and not metric.available and metric.encoder is None
            metric.update({"generated": _video(), "prompts": ["a", "b"], "images": _video()[:, 0]})
            assert math.isnan(metric.compute().item())
            assert metric.describe()["available"] is False and metric.describe()["feature_network"] is None
    for name in C.CLIP_PLUMBING_METRICS:
        assert name.startswith("clip_plumbing_randinit_")


def test_registered_plumbing_metric_skips_batches_without_its_keys():
    metric = build_metric("clip_plumbing_randinit_text_alignment")
    metric.update({"generated": _video()})  # no prompts: skipped, not an error
    assert math.isnan(metric.compute().item())
    metric.update({"generated": _video(), "prompts": ["a cat", "a dog"]})
    described = metric.describe()
    assert described["n_videos"] == 2 and described["feature_network"] == "clip_plumbing_randinit"
    assert described["weights_sha256"].startswith("randinit-seed0-")
    assert -100.0 <= metric.compute().item() <= 100.0


def test_local_folder_loads_offline_with_its_hash(tmp_path, encoder):
    """A CLIP saved by transformers loads with local_files_only and reports its weights' SHA-256."""
    folder = tmp_path / "clip"
    encoder.model.save_pretrained(folder)
    encoder.tokenizer.save_pretrained(folder)
    loaded = C.load_clip_encoder(folder)
    assert loaded.name == "clip" and len(loaded.weights_sha256) == 64
    assert (loaded.resize_to, loaded.crop_to) == (32, 32)  # no preprocessor_config.json: the model's size
    images = _video(b=2, f=1)[:, 0]
    assert torch.allclose(loaded.encode_images(images), encoder.encode_images(images), atol=1e-5)
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ValueError, match="not a loadable CLIP folder"):
        C.load_clip_encoder(broken)


def test_preprocess_resizes_shortest_side_and_centre_crops(encoder):
    wide = torch.rand(2, 3, 20, 40)
    out = encoder.preprocess(wide)
    assert out.shape == (2, 3, 32, 32)
    gray = torch.full((1, 3, 50, 70), 0.5)
    expected = (0.5 - encoder.mean) / encoder.std
    assert torch.allclose(encoder.preprocess(gray), expected.expand(1, 3, 32, 32), atol=1e-5)


def test_preprocessing_sizes_and_statistics_come_from_preprocessor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}, '
        '"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}'
    )
    assert E._preprocessing_from_folder(tmp_path, 224) == (40, 32, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert E._preprocessing_from_folder(tmp_path / "absent", 224) == (224, 224, E.OPENAI_CLIP_MEAN, E.OPENAI_CLIP_STD)
