"""Developer oracle: is ANY single SSD/LFSSD dampening clean for a digit? (test data picks; bounds the search)

The automatic mode may only look at training data. This script asks the opposite question
with the test set as judge: over a grid of alpha x parameter scope x lambda, does any one
dampening forget the digit (Df-test <= 5 %) while costing at most 3 points of Dr-test? If
none does, no training-only choice of "how much to dampen" can be clean for that digit on
that model; that is the bound docs/auto_ssd.md quotes.

    python -m scripts.auto_ssd_oracle --size 8 --variant lfssd --digits 4,5 --reference by-class
    python -m scripts.auto_ssd_oracle --size 32 --variant ssd --digits 1,8 --scopes layer4.0.,layer4.1.,fc.

Scopes are numbers (the deepest fraction of the parameter tensors, as the search's scopes) or
name prefixes (only the tensors whose name starts with it, e.g. one residual block).
Importances are cached under --work, shared with scripts/auto_ssd_explore.py. Run it from the
repository root as a module, like the harness.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from scripts.auto_ssd_explore import cached_importance, setup, test_scores
from unlearning.methods.ssd import dampen, scoped


def scope_of(full: dict[str, torch.Tensor], names: list[str], scope: str) -> dict[str, torch.Tensor]:
    """A fraction in (0, 1] (the search's scopes) or a tensor-name prefix; a prefix matching nothing
    is an error, not a silent "no clean configuration"."""
    try:
        fraction = float(scope)
    except ValueError:
        chosen = {name: value for name, value in full.items() if name.startswith(scope)}
        if not chosen:
            raise SystemExit(f"--scopes: no parameter tensor starts with {scope!r} (e.g. {names[-1]!r})") from None
        return chosen
    if not 0 < fraction <= 1:
        raise SystemExit(f"--scopes: a fraction must be in (0, 1], got {scope}")
    return scoped(full, names, fraction)


def alpha_range(text: str) -> tuple[float, float]:
    """``low,high`` with 0 < low < high (argparse type: a bad value is a usage error, exit 2)."""
    try:
        low, high = map(float, text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if not 0 < low < high:
        raise argparse.ArgumentTypeError(f"need 0 < LOW < HIGH, got {text!r}")
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--variant", choices=("ssd", "lfssd"), default="ssd")
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--reference", choices=("by-class", "mixed"), default="by-class")
    parser.add_argument("--alpha-range", type=alpha_range, default="0.005,1000", help="lowest,highest alpha (log grid)")
    parser.add_argument("--alphas", type=int, default=24, help="grid points")
    parser.add_argument("--scopes", default="0.1,0.3,0.5,1.0")
    parser.add_argument("--lambdas", default="tied,1", help="'tied' = 0.1 x alpha (the search's), or numbers")
    parser.add_argument("--ckpts", default="checkpoints",
                        help="folder of published models (train.py's paths.checkpoint_dir); a missing one is trained first")
    parser.add_argument("--work", default="/tmp/autossd/explore")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    low, high = args.alpha_range
    alphas = [low * (high / low) ** (i / max(args.alphas - 1, 1)) for i in range(args.alphas)]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for digit in args.digits.split(","):
        _, data, model = setup(args.size, digit, args.ckpts, [])
        tag = f"{args.size}-{args.variant}-"
        full = cached_importance(work, f"{tag}-full", model, data, "full", args.variant, args.reference == "by-class")
        forget = cached_importance(work, f"{tag}-forget{digit}", model, data, "forget", args.variant)
        names = [name for name, _ in model.named_parameters()]
        forget_before, retain_before = test_scores(model, data)
        original = {name: p.detach().clone() for name, p in model.named_parameters()}
        clean, best = [], None
        for lam in args.lambdas.split(","):
            for scope in args.scopes.split(","):
                for alpha in alphas:
                    with torch.no_grad():
                        for name, p in model.named_parameters():
                            p.copy_(original[name])
                    lambda_ = 0.1 * alpha if lam == "tied" else float(lam)
                    changed = dampen(model, scope_of(full, names, scope), forget, alpha, lambda_)
                    if not changed:
                        continue
                    forget_after, retain_after = test_scores(model, data)
                    drop = retain_before - retain_after
                    config = {"lambda": lam, "scope": scope, "alpha": round(alpha, 4), "df_test": round(forget_after, 1),
                              "dr_drop": round(drop, 1), "changed": changed}
                    miss = max(forget_after - 5, 0) + max(drop - 3, 0)
                    if best is None or miss < best[0]:
                        best = (miss, config)
                    if miss == 0:
                        clean.append(config)
        print(json.dumps({"variant": args.variant, "size": args.size, "digit": digit, "reference": args.reference,
                          "clean_configs": len(clean), "best": best[1] if best else None, "examples": clean[:3]}),
              flush=True)


if __name__ == "__main__":
    main()
