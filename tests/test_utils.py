import json

import pytest
import torch

from miva_lightning.utils import atomic_path, atomic_write_json, config_hash, tensor_fingerprint


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_hashes_are_order_independent_and_sensitive():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    t = torch.arange(6.0).reshape(2, 3)
    assert tensor_fingerprint([("x", t)]) == tensor_fingerprint([("x", t.clone())])
    assert tensor_fingerprint([("x", t)]) != tensor_fingerprint([("x", t + 1e-3)])


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    target = atomic_write_json(tmp_path / "x.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
