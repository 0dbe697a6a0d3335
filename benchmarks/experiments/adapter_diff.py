"""How far a LoRA adapter moved from another: per-tensor max |difference| of two adapter folders.

docs/training.md uses it to tell whether a training stage changed the weights at all (GRPO makes no update
when every group of samples gets one reward: the advantage is zero). Exit status 0 when the two folders
hold the same tensor names with equal values, 1 otherwise; one summary line either way.

    python benchmarks/experiments/adapter_diff.py runs/sepsisagent-135m-psr-brief/psr runs/sepsisagent-135m-psr-brief/rl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="an adapter folder (adapter_model.safetensors)")
    ap.add_argument("b", help="another adapter folder")
    args = ap.parse_args()
    from safetensors.torch import load_file

    ta, tb = (load_file(str(Path(p) / "adapter_model.safetensors")) for p in (args.a, args.b))
    if set(ta) != set(tb):
        print(f"different tensors: {len(set(ta) ^ set(tb))} names in one folder only")
        return 1
    diffs = {k: float((ta[k].float() - tb[k].float()).abs().max()) for k in sorted(ta)}
    moved = [k for k, d in diffs.items() if d > 0]
    print(f"{len(ta)} tensors; {len(moved)} differ; max |difference| {max(diffs.values(), default=0.0):.3g}")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
