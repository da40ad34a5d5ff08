"""Console entry points (miva-pretrain, miva-eval-base, miva-train, miva-animate, miva-eval, demo): thin Hydra
wrappers over `miva_lightning.pipelines`; nothing imports these modules (tests/test_layout.py)."""
