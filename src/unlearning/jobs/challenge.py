"""The unlearning challenge's score for one method: ``python audit.py audit.kind=challenge method=ssd``.

The NeurIPS 2023 challenge (computational core and its rules:
:mod:`unlearning.evaluation.challenge`) compares N unlearned models with N models retrained
without Df, per forgotten example. Here:

1. **N source models from N training seeds** (``seed``, ``seed + 1``, ... ``seed + N - 1``), found
   in the registry or trained once and published, as unlearn.py finds them. The challenge itself
   unlearns one original N times with N unlearning seeds; most methods here (SSD, LFSSD, the
   baseline) are deterministic, so N runs on one original would give N identical models and a
   degenerate score. N originals put the training noise into both families, as retraining has it.
2. **N retrained references**, one per training seed, the same models ``evaluation.reference=retrain``
   trains and publishes (trained once, reused by every method and every sweep).
3. **One forget set for all N**: the task's seed is fixed at the run's seed before the training
   seed varies (``task.seed`` follows ``seed`` otherwise), so every model forgets the same Df.
4. Each source model unlearns Df with the run's method; per Df example its logit-scaled
   confidence, and the model's accuracy on Dr and on the test split (as the challenge's
   utility ratios; the score is a report, nothing is tuned on it), are cached
   (``paths.cache_dir``, keyed by the source weights, the method settings and Df).

``audit.only_model=k`` prepares model k alone (source, reference, unlearned measurements), so
``python audit.py -m audit.kind=challenge audit.only_model='range(5)'`` spreads the work over a
multirun (SLURM too); a final ``python audit.py audit.kind=challenge`` finds them all and scores.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from unlearning.errors import UserError
from unlearning.evaluation.challenge import BUCKET_WIDTH, DELTA, challenge_confidence, challenge_score
from unlearning.evaluation.metrics import accuracy
from unlearning.evaluation.predictions import predict
from unlearning.fingerprint import dataset_digest, split_digest, weights_digest
from unlearning.io import atomic_write_json
from unlearning.jobs.audit import method_context
from unlearning.jobs.builders import build_cache, build_datamodule, build_task, start_job_of
from unlearning.jobs.reference import find_or_train_reference
from unlearning.jobs.unlearn import build_method, fresh_model_factory, load_source
from unlearning.validate import positive_number, whole_number

RESULTS_FILE = "challenge.json"
#: Below 3 models no epsilon earns points: the buckets end at ceil(ln(N - 1)).
MIN_MODELS = 3


def challenge_settings(cfg: DictConfig) -> tuple[int, float, float, int | None]:
    """(N, delta, bucket width, only_model) from ``audit.challenge``, checked."""
    settings = cfg.audit.get("challenge") or {}
    models = whole_number(settings.get("models", 5), "audit.challenge.models", minimum=MIN_MODELS,
                          hint="The score's buckets end at ceil(ln(N - 1)): fewer than 3 models score nothing.")
    delta = positive_number(settings.get("delta", DELTA), "audit.challenge.delta")
    if delta >= 1:
        raise UserError(f"audit.challenge.delta is the delta of (epsilon, delta)-DP, in (0, 1); got {delta}.")
    width = positive_number(settings.get("bucket_width", BUCKET_WIDTH), "audit.challenge.bucket_width")
    only = settings.get("only_model")
    if only is not None:
        only = whole_number(only, "audit.challenge.only_model", minimum=0)
        if only >= models:
            raise UserError(f"audit.challenge.only_model={only} is out of range: audit.challenge.models={models} "
                            f"numbers them 0..{models - 1}.")
    return models, delta, width, only


def config_for_seed(cfg: DictConfig, seed: int, task_seed: int | None) -> DictConfig:
    """The run's config with training seed ``seed`` and the forget set's seed held at ``task_seed``."""
    seeded = copy.deepcopy(cfg)
    with open_dict(seeded):
        seeded.seed = seed
        if task_seed is not None:
            seeded.task.seed = task_seed
    return seeded


def measure(model: torch.nn.Module, data) -> dict[str, torch.Tensor]:
    """Df confidences and the Dr and test accuracies of one model (what the score needs of it)."""
    model = model.eval()
    logits, labels = predict(model, data.loader("forget"))
    retain_logits, retain_labels = predict(model, data.loader("retain"))
    test_logits, test_labels = predict(model, data.loader("test"))
    return {"confidence": torch.from_numpy(challenge_confidence(logits, labels)),
            "retain_acc": torch.tensor(accuracy(retain_logits, retain_labels)),
            "test_acc": torch.tensor(accuracy(test_logits, test_labels))}


def model_pair(cfg: DictConfig, index: int, seed: int, task_seed: int | None, forget_digest: list[str],
               run_dir: Path, cache) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Measurements of the ``index``-th unlearned model and of its retrained reference."""
    seeded = config_for_seed(cfg, seed, task_seed)
    data = build_datamodule(seeded, build_task(seeded))
    data.setup()
    digest = split_digest(data, "forget", with_labels=True)
    if forget_digest and digest != forget_digest[0]:
        raise UserError(f"training seed {seed} gives another forget set than seed {seed - index}: this task's forget "
                        "set depends on the training seed in a way audit.kind=challenge cannot hold fixed.")
    forget_digest.append(digest)
    _, _, model = load_source(seeded, data, seed, run_dir)
    fresh = fresh_model_factory(seeded, data, seed)
    reference, _ = find_or_train_reference(seeded, data, seed, fresh, run_dir)
    method_settings = OmegaConf.to_container(cfg.method, resolve=True)
    parts = {"kind": "challenge-model", "version": 1, "weights": weights_digest(model), "method": method_settings,
             "forget": digest, "images": dataset_digest(data) or data.bundle.name, "seed": seed}

    def unlearn_and_measure() -> dict[str, torch.Tensor]:
        original = copy.deepcopy(model).eval().requires_grad_(False)
        L.seed_everything(seed, workers=True, verbose=False)
        context = method_context(seeded, data, seed, original, run_dir / f"model{index}", cache)
        start = time.perf_counter()
        build_method(seeded).unlearn(model, data, context)
        return {**measure(model, data), "time_s": torch.tensor(time.perf_counter() - start)}

    unlearned = unlearn_and_measure() if cache is None else cache.get_or_compute(parts, unlearn_and_measure)
    return unlearned, measure(reference, data)


def challenge(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The whole score (or one model of it with ``audit.challenge.only_model``); writes ``challenge.json``."""
    seed = start_job_of(cfg)
    models, delta, width, only = challenge_settings(cfg)
    build_method(cfg).check_task(str(cfg.task.name))
    task_seed = int(cfg.task.seed) if "seed" in cfg.task and cfg.task.seed is not None else None
    cache = build_cache(cfg)
    if only is not None and cache is None:
        raise UserError("audit.challenge.only_model keeps each model's measurements in the cache for the final "
                        "scoring run; it needs cache=true.")
    wanted = [only] if only is not None else list(range(models))
    start, digests = time.perf_counter(), []
    pairs = [model_pair(cfg, k, seed + k, task_seed, digests, run_dir, cache)
             for k in tqdm(wanted, desc=f"challenge models ({cfg.method.name})", unit="model")]
    if only is not None:
        print(f"model {only} of {models} is ready (source, reference, unlearned and measured); run audit.py "
              "audit.kind=challenge without audit.challenge.only_model to score all of them.")
        return None
    unlearned = np.stack([u["confidence"].numpy() for u, _ in pairs])
    retrained = np.stack([r["confidence"].numpy() for _, r in pairs])
    retain = (np.array([float(u["retain_acc"]) for u, _ in pairs]), np.array([float(r["retain_acc"]) for _, r in pairs]))
    test = (np.array([float(u["test_acc"]) for u, _ in pairs]), np.array([float(r["test_acc"]) for _, r in pairs]))
    score = challenge_score(unlearned, retrained, retain, test, delta, width)
    results = {
        "status": "complete", "job": "audit", "audit": "challenge", "method": str(cfg.method.name),
        "dataset": str(cfg.dataset.name), "model": str(cfg.model.name), "task": str(cfg.task.name),
        "seeds": [seed + k for k in range(models)], "models": models, "delta": delta, "bucket_width": width,
        "n_forget": int(unlearned.shape[1]), **score.as_dict(),
        "unlearned_retain_acc": retain[0].tolist(), "retrained_retain_acc": retain[1].tolist(),
        "unlearned_test_acc": test[0].tolist(), "retrained_test_acc": test[1].tolist(),
        "method_time_s": [float(u["time_s"]) for u, _ in pairs], "time_s": time.perf_counter() - start,
        "epsilons": score.epsilons.tolist(), "method_config": OmegaConf.to_container(cfg.method, resolve=True),
    }
    atomic_write_json(run_dir / RESULTS_FILE, results)
    print_challenge(results)
    print(f"results: {run_dir / RESULTS_FILE}")
    return results


def print_challenge(results: dict[str, Any]) -> None:
    table = Table(title=f"Unlearning-challenge score of method={results['method']} "
                        f"({results['models']} unlearned vs {results['models']} retrained models)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("final score = F x retain ratio x test ratio", f"{results['final_score']:.3f}")
    table.add_row("forgetting quality F (1 = no test tells them apart)", f"{results['forgetting_quality']:.3f}")
    table.add_row("retain accuracy ratio (unlearned / retrained)", f"{results['retain_ratio']:.3f}")
    table.add_row("test accuracy ratio (unlearned / retrained)", f"{results['test_ratio']:.3f}")
    table.add_row("median epsilon per Df example", f"{results['epsilon_median']:.2f}")
    table.add_row("share of Df examples at the cap (told apart)", f"{results['share_at_cap']:.1%}")
    table.caption = (f"{results['n_forget']} Df examples, seeds {results['seeds'][0]}..{results['seeds'][-1]}, "
                     f"delta {results['delta']:g}, buckets of {results['bucket_width']:g}, {results['time_s']:.0f} s")
    Console().print(table)
