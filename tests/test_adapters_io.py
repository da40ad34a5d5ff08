"""MIVA files: safetensors round trip, base identity, and every refusal with a message that says why."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from miva_lightning.adapters import (
    Miva,
    MivaConfig,
    attach_mivas,
    base_identity,
    detach_mivas,
    load_miva,
    save_miva,
)
from miva_lightning.adapters.io import METADATA_KEY
from tiny_components import tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def perturb(miva, seed=7):
    """Every parameter moved away from its (partly zero) initial value, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in miva.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return miva


@pytest.fixture
def trained(unet):
    return perturb(Miva.from_unet(unet, MivaConfig(name="waterfall", cfa_variant="separate", ca_rank=16, lora_rank=8)))


@pytest.fixture
def saved(tmp_path, unet, trained):
    return save_miva(tmp_path / "waterfall.safetensors", trained, base_identity(unet, "tiny-test"))


def outputs(unet, miva):
    generator = torch.Generator().manual_seed(3)
    inputs = (torch.randn(2, 4, 3, 8, 8, generator=generator), torch.tensor([5, 600]), torch.randn(6, 7, 32, generator=generator))
    handle = attach_mivas(unet, [miva])
    try:
        with torch.no_grad():
            return unet(*inputs).sample
    finally:
        detach_mivas(handle)


def test_round_trip_gives_identical_outputs_and_metadata(unet, trained, saved):
    loaded, metadata = load_miva(saved, unet=unet)
    assert loaded.config == trained.config
    assert metadata["base"] == base_identity(unet, "tiny-test")
    assert metadata["parameter_counts"] == trained.parameter_counts()
    assert torch.equal(outputs(unet, loaded), outputs(unet, trained))
    without_unet, _ = load_miva(saved)  # shapes come from the file alone
    reloaded, original = without_unet.state_dict(), trained.state_dict()
    assert sorted(reloaded) == sorted(original)
    assert all(torch.equal(reloaded[key], original[key]) for key in original)


def _rewrite_config(source, target, change):
    """Copy a MIVA file after `change` edited the config in its metadata."""
    with safe_open(str(source), framework="pt") as reader:
        metadata = json.loads(reader.metadata()[METADATA_KEY])
    change(metadata["config"])
    save_file(load_file(str(source)), str(target), metadata={METADATA_KEY: json.dumps(metadata)})
    return target


def test_round_trip_keeps_the_lora_scale_and_init(tmp_path, unet):
    config = MivaConfig(name="authors", ca_rank=16, lora_rank=8, lora_alpha=1.0, lora_init="normal")
    miva = perturb(Miva.from_unet(unet, config))
    path = save_miva(tmp_path / "authors.safetensors", miva, base_identity(unet, "tiny-test"))
    loaded, metadata = load_miva(path, unet=unet)
    assert (metadata["config"]["lora_alpha"], metadata["config"]["lora_init"]) == (1.0, "normal")
    assert loaded.config == config
    assert torch.equal(outputs(unet, loaded), outputs(unet, miva))
    # the recorded scale is what is applied: the same tensors at scale 1 give another video
    loaded.config.lora_alpha = None
    assert not torch.allclose(outputs(unet, loaded), outputs(unet, miva), atol=1e-5)


def test_file_without_lora_scale_keys_loads_with_scale_one(tmp_path, unet, trained, saved):
    def drop(config):
        del config["lora_alpha"], config["lora_init"]

    old = _rewrite_config(saved, tmp_path / "old.safetensors", drop)
    loaded, metadata = load_miva(old, unet=unet)
    assert "lora_alpha" not in metadata["config"]  # really a file of the old format
    assert (loaded.config.lora_alpha, loaded.config.lora_init) == (None, "kaiming")
    assert torch.equal(outputs(unet, loaded), outputs(unet, trained))


def test_fingerprint_ignores_attached_lora_and_sees_weight_changes(unet, trained):
    clean = base_identity(unet, "x")["fingerprint"]
    handle = attach_mivas(unet, [trained])
    assert base_identity(unet, "x")["fingerprint"] == clean
    detach_mivas(handle)
    assert base_identity(tiny_unet(seed=1), "x")["fingerprint"] != clean


def test_other_architecture_is_refused_naming_layer_and_shapes(saved):
    other = tiny_unet(block_out_channels=(16, 64))
    with pytest.raises(ValueError) as error:
        load_miva(saved, unet=other)
    message = str(error.value)
    assert "down_blocks_0_attentions_0_transformer_blocks_0_attn1" in message
    assert "(32, 32)" in message and "(16, 16)" in message


def test_other_base_weights_are_refused_unless_not_strict(saved):
    other = tiny_unet(seed=1)
    with pytest.raises(ValueError, match="fingerprint.*strict_base=False"):
        load_miva(saved, unet=other)
    with pytest.warns(UserWarning, match="tiny-test"):
        miva, _ = load_miva(saved, unet=other, strict_base=False)
    assert miva.config.name == "waterfall"


def test_missing_pickle_and_foreign_files_are_refused(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="no MIVA file"):
        load_miva(tmp_path / "absent.safetensors")
    pickled = tmp_path / "miva.safetensors"
    torch.save(trained.state_dict(), pickled)
    with pytest.raises(ValueError, match="pickle"):
        load_miva(pickled)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"definitely not a tensor file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_miva(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a MIVA"):
        load_miva(foreign)
    with pytest.raises(ValueError, match="safetensors only"):
        save_miva(tmp_path / "miva.pt", trained, {"name": "x", "fingerprint": "0"})


def _rewrite(source, target, change):
    """Copy a MIVA file with its metadata, after `change` edited its tensors."""
    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as reader:
        metadata = reader.metadata()
    change(tensors)
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_unknown_missing_and_nan_tensors_are_refused(tmp_path, saved):
    extra = _rewrite(saved, tmp_path / "extra.safetensors", lambda t: t.update(stray=torch.zeros(1)))
    with pytest.raises(ValueError, match="unknown tensors.*stray"):
        load_miva(extra)
    key = next(k for k in load_file(str(saved)) if k.startswith("implicit_prompt.") and k.endswith(".up.weight"))
    missing = _rewrite(saved, tmp_path / "missing.safetensors", lambda t: t.pop(key))
    with pytest.raises(ValueError, match="lacks.*up.weight"):
        load_miva(missing)
    poisoned = _rewrite(saved, tmp_path / "nan.safetensors", lambda t: t[key].fill_(float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        load_miva(poisoned)


def test_save_is_atomic_and_refuses_nan(tmp_path, unet, trained, saved):
    before = saved.read_bytes()
    with torch.no_grad():
        next(trained.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        save_miva(saved, trained, base_identity(unet, "tiny-test"))
    assert saved.read_bytes() == before  # the previous file survives a failed save
    assert [p.name for p in tmp_path.iterdir()] == ["waterfall.safetensors"]


def test_a_safetensors_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path, trained):
    """The first byte of a safetensors file is the low byte of its header length: 0x80 for one header size in
    256. Such a file (found by a 20,352-byte header in the ablation grid) must load; a pickle must not."""
    for pad in range(300):
        path = tmp_path / f"miva{pad}.safetensors"
        save_miva(path, trained, {"name": "x", "fingerprint": "0", "note": "p" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    miva, _ = load_miva(path)
    assert miva.config.name == trained.config.name
    legacy = tmp_path / "legacy.safetensors"
    torch.save(trained.state_dict(), legacy, _use_new_zipfile_serialization=False)  # 0x80 0x02: a real pickle
    with pytest.raises(ValueError, match="pickle"):
        load_miva(legacy)
