"""Bytes per decoded token and asset weight bytes of the packaged recipes at full size, from the
registry's dimensions (gemmaios.recipe.registry_linear_shapes), beside uniform int4 and the seed.

    python benchmarks/recipe_bytes.py

Arithmetic on the storage Core AI has (docs/recipes.md): 2-bit levels 2 bits, 3-bit in 4-bit
containers, fp16 scales (and affine minimums) per group, kept tensors fp16, the fp16 embedding
table in the asset (one row read a token). Not a conversion: a synthetic full-size 31B (62 GB of
bf16 weights) does not fit this 24 GB machine. Measured on this tree:

    31b  gemma4-31b-q2-mixed  per token 18.23 GB  asset weights 21.05 GB  4.75 bits/weight
         uniform int4 17.27 GB per token; the seed (MLX, 3-bit packed) ships ~18 GB
    e4b  iphone-mixed         per token 2.24 GB   uniform int4 2.61 GB

The seed's plan reads about what uniform int4 does in Core AI: its kept o_proj is 6.2 GB a token
and its 3-bit down_proj costs 4 bits here; the MLP's 2-bit levels are where it saves.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toolkit"))

from gemmaios.recipe import load_recipe, recipe_estimate, registry_linear_shapes  # noqa: E402
from gemmaios.registry import MODELS  # noqa: E402
from gemmaios.roofline import estimate_weight_bytes  # noqa: E402

SEED_31B_GB = 18.0  # shared/seeds/004: the 31B at UD-Q2_K_XL on MLX

PAIRS = (("31b", "gemma4-31b-q2-mixed"), ("e4b", "iphone-mixed"))


def main() -> None:
    for key, name in PAIRS:
        spec = MODELS[key]
        est = recipe_estimate(load_recipe(name), registry_linear_shapes(spec), spec.vocab_size, spec.hidden_size)
        int4 = estimate_weight_bytes(spec, "int4").total_bytes
        print(f"{key:4} {name:20} per token {est['bytes_per_token'] / 1e9:.2f} GB  asset weights "
              f"{est['asset_weight_bytes'] / 1e9:.2f} GB  {est['bits_per_weight']} bits/weight  "
              f"(uniform int4 {int4 / 1e9:.2f} GB per token"
              + (f"; seed {SEED_31B_GB:.0f} GB)" if key == "31b" else ")"))
        for label, g in sorted(est["by_label"].items(), key=lambda kv: -kv[1]["bytes"]):
            print(f"       {label:12} {g['storage']:8} {g['tensors']:4} tensors {g['bytes'] / 1e9:6.2f} GB")


if __name__ == "__main__":
    main()
