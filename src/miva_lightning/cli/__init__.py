"""Console entry points (miva-pretrain, miva-eval-base, miva-train, miva-animate, miva-eval, demo)."""
