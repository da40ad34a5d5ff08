"""The install is reproducible: pins agree everywhere and `make setup` is a no-op when up to date."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"\s*-?\s*([A-Za-z0-9_.\-]+)==(\S+)", l) for l in lines) if m}


def test_requirements_pin_torch_and_match_environment_yml():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert req.get("torch") == "2.13.0", "torch must be pinned in requirements.txt (else a CUDA build is pulled)"
    assert req == env, f"requirements.txt and environment.yml disagree: {set(req.items()) ^ set(env.items())}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_setup_is_up_to_date_after_install():
    # `make -q` exits 0 only when the target needs no work: setup is idempotent and instant.
    result = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"`make setup` would reinstall: {result.stdout}{result.stderr}"
