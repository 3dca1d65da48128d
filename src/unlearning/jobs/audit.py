"""U-LiRA: can a strong attacker tell this method's unlearned models from models retrained without the samples?

Hayes et al. (2024) show that population attacks make inexact unlearning look better than
it is; their U-LiRA fits, per example, what its confidence looks like in models that
trained on it and then unlearned it, and in models that never saw it, and asks which of
the two a given model resembles. Here, for a random-forgetting request (task=random):

1. K shadow models, each trained from scratch with the source recipe on a seeded random
   half of D (published under ``<checkpoint_dir>/shadows/``, trained once, reused by every
   method; a lock keeps concurrent jobs from training one twice).
2. Each shadow unlearns the part of the request's Df that lies in its half, with the run's
   method and settings; the logit-scaled confidences of all Df samples under the unlearned
   shadow are cached (``paths.cache_dir``, keyed by shadow weights, method settings and Df).
   A Df sample is then "unlearned" in the shadows whose half held it and "never seen" in the others.
3. Leave-one-shadow-out, each (shadow, sample) pair is scored by a Gaussian likelihood ratio
   fitted on the other shadows (:func:`unlearning.evaluation.ulira.leave_one_out_audit`); the
   attack's AUC and balanced accuracy say how well it tells unlearned from retrained:
   0.5 = indistinguishable (what exact retraining gives).
4. The control: the same attack against the shadows *before* unlearning (members kept). An
   audit only means something when the control's AUC is well above 0.5: when the models do not
   memorise their training samples, no method can be told from retraining, and none is proven
   private by it either. The audit warns when the control is below ``CONTROL_POWER``.

``audit.only_shadow=k`` prepares shadow k alone, so ``python audit.py -m audit.only_shadow=range(8)``
spreads the shadows over a multirun (locally or on SLURM); a final ``python audit.py``
finds them all and only scores.
"""

from __future__ import annotations

import copy
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.splits import GivenSamples
from unlearning.errors import UserError
from unlearning.evaluation.predictions import predict
from unlearning.evaluation.ulira import leave_one_out_audit, logit_scaled_confidence
from unlearning.fingerprint import dataset_digest, digest_array, digest_json, weights_digest
from unlearning.io import atomic_write_json
from unlearning.jobs.builders import (
    build_cache,
    build_datamodule,
    build_model,
    build_task,
    make_trainer,
    model_identity,
    start_job_of,
    training_recipe,
)
from unlearning.jobs.launched import prepare_job
from unlearning.jobs.unlearn import build_method, fresh_model_factory
from unlearning.locks import compute_once
from unlearning.methods.base import MethodContext
from unlearning.methods.retrain import train_from_scratch
from unlearning.models.checkpoints import (
    checkpoint_exists,
    load_checkpoint,
    load_into,
    save_checkpoint,
)
from unlearning.models.classifier import training_settings
from unlearning.runs import claim_run_folder
from unlearning.validate import one_of, whole_number

RESULTS_FILE = "ulira.json"
#: Each pair is scored from the other shadows; each side needs at least 2 observations, so K >= 5.
MIN_SHADOWS = 5
#: Below this control AUC (no unlearning at all) the attack cannot find members: the audit has no power.
CONTROL_POWER = 0.6


def shadow_half(n_train: int, shadow: int, seed: int) -> np.ndarray:
    """The sorted training indices of shadow ``shadow``'s random half of D (seeded by the run's seed)."""
    rng = np.random.default_rng([int(seed), int(shadow), 7321])
    return np.sort(rng.choice(n_train, n_train // 2, replace=False))


def shadow_data(cfg: DictConfig, data: UnlearningDataModule, half: np.ndarray, forget: np.ndarray | None,
                description: str) -> UnlearningDataModule:
    """A data module whose D is ``half`` (and whose Df is ``forget``, positions within the half)."""
    bundle = data.bundle.restricted_to(half)
    task = None if forget is None else GivenSamples(forget, description)
    shadow = build_datamodule(cfg, task)
    shadow.builder, shadow.dataset_labels = (lambda: bundle), data.label_kind
    shadow.setup()
    return shadow


def method_context(cfg: DictConfig, data, seed: int, original, run_dir: Path, cache, **trainer: Any) -> MethodContext:
    return MethodContext(make_trainer=partial(make_trainer, cfg, False, default_root_dir=str(run_dir), **trainer),
                         fresh_model=fresh_model_factory(cfg, data, seed), original=original,
                         task=str(cfg.task.name), seed=seed,
                         training=training_settings(cfg.dataset.training, cfg.model.get("training")), cache=cache)


def shadow_path(cfg: DictConfig, data: UnlearningDataModule, half: np.ndarray, shadow: int, seed: int) -> Path:
    source = model_identity(cfg, data.label_kind, data.input_size, seed).name
    digest = digest_json({"half": digest_array(half), "images": dataset_digest(data) or data.bundle.name,
                          "recipe": training_recipe(cfg), "seed": seed})[:12]
    return Path(cfg.paths.checkpoint_dir) / "shadows" / f"{source}-half{shadow}-{digest}"


def trained_shadow(cfg: DictConfig, data: UnlearningDataModule, shadow: int, seed: int, run_dir: Path) -> torch.nn.Module:
    """Shadow ``shadow``: trained from scratch on its half of D, once, and published."""
    half = shadow_half(len(data.indices("full")), shadow, seed)
    path = shadow_path(cfg, data, half, shadow, seed)
    with compute_once(path.with_name(path.name + ".lock"), lambda: checkpoint_exists(path), 6 * 3600.0,
                      what=f"shadow model {path.name}") as must_train:
        if must_train:
            print(f"Training shadow model {shadow} on its half of D ({len(half)} samples): {path}")
            half_data = shadow_data(cfg, data, half, None, "")
            model = build_model(cfg, data.num_classes, data.channels)
            L.seed_everything(seed + 1000 * (shadow + 1), workers=True, verbose=False)
            context = method_context(cfg, half_data, seed + 1000 * (shadow + 1), model, run_dir / f"shadow{shadow}",
                                     None, devices=1, num_nodes=1, strategy="auto")
            start = time.perf_counter()
            info = train_from_scratch(model, half_data, context, "full")
            logits, labels = predict(model.eval(), data.loader("test"))
            test_acc = float((logits.argmax(1) == labels).float().mean() * 100)
            save_checkpoint(path, model.cpu(), {
                "shadow": shadow, "half_digest": digest_array(half), "dataset": cfg.dataset.name,
                "label_kind": data.label_kind, "model": cfg.model.name, "num_classes": data.num_classes,
                "seed": seed, "recipe": training_recipe(cfg), "train_time_s": time.perf_counter() - start,
                "test_acc": test_acc, **info}, replace=path.exists() and not checkpoint_exists(path))
    state, _ = load_checkpoint(path)
    return load_into(build_model(cfg, data.num_classes, data.channels), state, path)


def shadow_observations(cfg: DictConfig, data: UnlearningDataModule, shadow: int, seed: int, run_dir: Path,
                        cache) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per Df sample: confidence under the unlearned shadow, under the shadow before unlearning, status 1/0.

    The confidences are logit-scaled (log p / (1 - p) of the true label); status 1 = the sample
    was in the shadow's half (trained on, then unlearned), 0 = never seen.
    """
    targets = np.asarray(data.indices("forget"))
    half = shadow_half(len(data.indices("full")), shadow, seed)
    inside = np.isin(targets, half)
    status = torch.as_tensor(inside.astype(np.int64))
    model = trained_shadow(cfg, data, shadow, seed, run_dir)
    kept_logits, kept_labels = predict(model.eval(), data.loader("forget"))
    kept = logit_scaled_confidence(kept_logits, kept_labels).double()
    method_settings = OmegaConf.to_container(cfg.method, resolve=True)
    parts = {"kind": "ulira-shadow", "version": 1, "weights": weights_digest(model), "method": method_settings,
             "targets": digest_array(targets), "images": dataset_digest(data) or data.bundle.name, "seed": seed}

    def unlearn_and_measure() -> dict[str, torch.Tensor]:
        positions = np.searchsorted(half, targets[inside])
        if len(positions):
            half_data = shadow_data(cfg, data, half, positions, f"{len(positions)} audit samples (shadow {shadow})")
            original = copy.deepcopy(model).eval().requires_grad_(False)
            L.seed_everything(seed, workers=True, verbose=False)
            context = method_context(cfg, half_data, seed, original, run_dir / f"shadow{shadow}", cache)
            build_method(cfg).unlearn(model, half_data, context)
        logits, labels = predict(model.eval(), data.loader("forget"))
        return {"phi": logit_scaled_confidence(logits, labels).double()}

    if cache is None:
        return unlearn_and_measure()["phi"], kept, status
    return cache.get_or_compute(parts, unlearn_and_measure)["phi"], kept, status


def audit_settings(cfg: DictConfig) -> tuple[int, int | None]:
    if str(cfg.task.name) != "random":
        raise UserError(f"the U-LiRA audit measures per-sample forgetting and needs task=random (got task="
                        f"{cfg.task.name}); for full-class and sub-class forgetting use evaluation.reference=retrain.")
    shadows = whole_number(cfg.audit.shadows, "audit.shadows", minimum=MIN_SHADOWS,
                           hint="Each sample is scored from the other shadows, with at least two on each side.")
    only = cfg.audit.get("only_shadow")
    if only is not None:
        only = whole_number(only, "audit.only_shadow", minimum=0)
        if only >= shadows:
            raise UserError(f"audit.only_shadow={only} is out of range: audit.shadows={shadows} numbers them "
                            f"0..{shadows - 1}.")
    return shadows, only


def ulira(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The whole audit (or one shadow of it with ``audit.only_shadow``); writes ``ulira.json``."""
    seed = start_job_of(cfg)
    shadows, only = audit_settings(cfg)
    build_method(cfg).check_task("random")
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    cache = build_cache(cfg)
    wanted = [only] if only is not None else list(range(shadows))
    start = time.perf_counter()
    observations = [shadow_observations(cfg, data, k, seed, run_dir, cache)
                    for k in tqdm(wanted, desc=f"U-LiRA shadows ({cfg.method.name})", unit="shadow")]
    if only is not None:
        print(f"shadow {only} of {shadows} is ready (trained, unlearned, measured); run audit.py without "
              "audit.only_shadow to score all of them.")
        return None
    confidences = torch.stack([phi for phi, _, _ in observations]).numpy()
    kept = torch.stack([phi for _, phi, _ in observations]).numpy()
    status = torch.stack([s for _, _, s in observations]).numpy()
    audit = leave_one_out_audit(confidences, status)
    control = leave_one_out_audit(kept, status)
    results = {
        "status": "complete", "job": "audit", "audit": "ulira", "method": str(cfg.method.name),
        "dataset": str(cfg.dataset.name), "model": str(cfg.model.name), "seed": seed, "shadows": shadows,
        "n_targets": int(len(data.indices("forget"))), "forget": data.split.description,
        "auc": audit["auc"], "balanced_accuracy": audit["balanced_accuracy"],
        "balanced_accuracy_at_zero": audit["balanced_accuracy_at_zero"], "n_pairs": audit["n_pairs"],
        "n_unlearned": audit["n_unlearned"], "n_retrained": audit["n_retrained"],
        "global_variance": audit["global_variance"], "time_s": time.perf_counter() - start,
        "control_auc": control["auc"], "control_balanced_accuracy_at_zero": control["balanced_accuracy_at_zero"],
        "has_power": bool(control["auc"] >= CONTROL_POWER),
        "method_config": OmegaConf.to_container(cfg.method, resolve=True),
    }
    atomic_write_json(run_dir / RESULTS_FILE, results)
    print_audit(results)
    print(f"results: {run_dir / RESULTS_FILE}")
    return results


def print_audit(results: dict[str, Any]) -> None:
    table = Table(title=f"U-LiRA audit of method={results['method']} ({results['shadows']} shadow models)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("attack AUC (0.5 = like retraining)", f"{results['auc']:.3f}")
    table.add_row("balanced accuracy, LR > 0", f"{results['balanced_accuracy_at_zero']:.3f}")
    table.add_row("balanced accuracy, best threshold", f"{results['balanced_accuracy']:.3f}")
    table.add_row("scored pairs (unlearned / retrained)", f"{results['n_unlearned']} / {results['n_retrained']}")
    table.add_row("control: attack AUC before unlearning", f"{results['control_auc']:.3f}")
    table.caption = f"{results['n_targets']} Df samples, {results['time_s']:.0f} s"
    console = Console()
    console.print(table)
    if not results["has_power"]:
        console.print(f"Warning: even before unlearning the attack tells members from non-members with AUC "
                      f"{results['control_auc']:.3f} only (< {CONTROL_POWER}): these models do not memorise their "
                      "samples detectably with this many shadows, so this audit cannot tell any method from "
                      "retraining. More shadows (audit.shadows) or a setting that memorises (CIFAR) give it power.")


AUDIT_KINDS = ("ulira", "challenge")


def audit_job(cfg: DictConfig) -> float | None:
    """audit.py's task function: U-LiRA (returns the attack's AUC) or, with ``audit.kind=challenge``, the
    unlearning challenge's score (returns the final score); the value is what sweepers read."""
    from hydra.core.hydra_config import HydraConfig

    from unlearning.jobs import challenge

    kind = one_of(str(cfg.audit.get("kind", "ulira")).lower(), "audit.kind", AUDIT_KINDS,
                  hint="(ulira: U-LiRA with shadow models; challenge: the NeurIPS 2023 unlearning challenge's score)")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    prepare_job(cfg)
    results_file = RESULTS_FILE if kind == "ulira" else challenge.RESULTS_FILE
    finished = (run_dir / results_file).is_file() and json.loads((run_dir / results_file).read_text()).get("status")
    with claim_run_folder(run_dir, finished=bool(finished), what="audit"):
        if kind == "challenge":
            results = challenge.challenge(cfg, run_dir)
            return None if results is None else results["final_score"]
        results = ulira(cfg, run_dir)
    return None if results is None else results["auc"]
