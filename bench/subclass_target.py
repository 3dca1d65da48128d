"""Can a training-only signal say how much of a sub-class a retrained model still recognises?

    python -m bench.subclass_target --dataset digits --records results/digits-ssd-subclass --write
    python -m bench.subclass_target --dataset fashion_mnist --records results/fashion-subclass --write

The hands-free mode (``method.alpha=auto``) needs, for a sub-class request, a target for how much
of Df a model retrained without the sub-class would still put in its coarse class: a model
retrained without one digit of a pair forgets it almost entirely, one retrained without Sneaker
still calls every sneaker footwear (docs/auto_ssd.md, step 8). This measures three candidate
estimates that read only training data (never test data, never the reference) against what the
committed records say the retrained reference of the same training seed did with Df-train (images it
never trained on; its Df-test is printed beside it, but nothing is judged on the test split):

* **validation accuracy**: the original model's accuracy on the validation split's images of the
  sub-class (``method.auto.target_from_validation: [random, subclass]``, opt-in);
* **k-NN over features**: a 10-nearest-neighbour classifier fitted on the original model's pooled,
  L2-normalised features of 2,000 retained training images (the siblings included, the sub-class
  not), with their coarse labels, asked to classify 500 Df images; the share put in Df's coarse
  class, at the outputs of ResNet18's ``layer2``, ``layer3`` and ``layer4``;
* **neighbour vote over pixels**: what the search aims at by default (``method.auto.
  target_from_neighbours: [subclass]``), computed by the search's own code on the search's own
  samples: a 5-nearest-neighbour vote among up to 5,000 retained training images, in the first 50
  principal axes of their pixels, asked to classify the 256-image Df probe (SSD: labels; the
  ``neighbour_vote_lfssd`` column: the original's predictions, as LFSSD reads no labels).

It prints one row per request and, with ``--write``, records them in ``bench/results.json`` under
``explore:subclass-target-<dataset>-seed<N>``. The source models must exist (``python train.py
dataset=... labels=coarse seed=N``; ``make digits-subclass-table`` / ``make fashion-subclass-table``
train them). Exit status 0, or 2 when a model or the records are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from sklearn.neighbors import KNeighborsClassifier

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("layer2", "layer3", "layer4")
RETAIN_SAMPLE, FORGET_SAMPLE, NEIGHBOURS = 2000, 500, 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.subclass_target", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=("digits", "fashion_mnist", "fashion_mnist_v1"),
                        help="fashion_mnist_v1: the first recipe (results/fashion-subclass before it was remade)")
    parser.add_argument("--records", required=True, type=Path, help="a sub-class table's records, e.g. results/fashion-subclass")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (default 0)")
    parser.add_argument("--root", default=str(ROOT), help="paths.root_dir holding checkpoints/ (default: the repository)")
    parser.add_argument("--write", action="store_true", help="record the rows in bench/results.json")
    return parser.parse_args(argv)


def retrained_by_request(records: Path, seed: int) -> dict[str, dict[str, float]]:
    """What each request's retrained reference did, from any run of that request and seed in the records."""
    found: dict[str, dict[str, float]] = {}
    for path in sorted(records.glob("runs/**/results.json")):
        record = json.loads(path.read_text())
        retrained = record.get("metrics", {}).get("retrained")
        if record.get("seed") != seed or record.get("task") != "subclass" or not retrained:
            continue
        found.setdefault(str(record["config"]["task"]["forget"]), {"Df-train": retrained["forget_train_acc"],
                                                  "Df-test": retrained["forget_test_acc"]})
    return found


def sample(dataset, count: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """A seeded sample of a split's images and labels (all of it when smaller)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    items = [dataset[int(i)] for i in order]
    return torch.stack([image for image, _ in items]), np.array([int(label) for _, label in items])


def features(model: torch.nn.Module, images: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled, L2-normalised outputs of LAYERS and the predicted classes, in eval mode."""
    grabbed: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _module, _inputs, output, name=name: grabbed.__setitem__(name, output.mean((2, 3)))) for name in LAYERS]
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in LAYERS}
    predictions = []
    try:
        with torch.no_grad():
            for chunk in images.split(256):
                predictions.append(model(chunk).argmax(1))
                for name in LAYERS:
                    outputs[name].append(torch.nn.functional.normalize(grabbed[name], dim=1))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(v).numpy() for name, v in outputs.items()}, torch.cat(predictions).numpy()


def search_target(model: torch.nn.Module, data, variant: str, seed: int) -> float:
    """The share the hands-free search's neighbour vote gives (its default settings, its samples)."""
    from unlearning.methods.ssd.policies import DampeningRequest, SearchedAlpha
    from unlearning.methods.ssd.search import AutoSettings, predicted_classes, sample_items

    settings = AutoSettings(seed=seed)
    request = DampeningRequest.from_datamodule(data, variant)
    probe, labels = sample_items(request.forget_data, settings.forget_samples, settings.seed)
    classes = labels if request.grouped_by == "label" else predicted_classes(model, probe, request.batch_size)
    return SearchedAlpha(settings).neighbour_target(model, request, probe, classes)["share"]


def measure(dataset: str, forget: str, seed: int, root: str) -> dict[str, float]:
    from unlearning.jobs.builders import build_datamodule, build_model, build_task, published_model_path
    from unlearning.models.checkpoints import checkpoint_exists, load_checkpoint, load_into

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("unlearn", [f"dataset={dataset}", "task=subclass", f"task.forget={forget}", f"seed={seed}",
                                  f"paths.root_dir={root}"], return_hydra_config=True)
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    source = published_model_path(cfg, data.label_kind, data.input_size)
    if not checkpoint_exists(source):
        raise FileNotFoundError(f"no coarse {dataset} model of seed {seed} at {source}: train it with "
                                f"`python train.py dataset={dataset} labels=coarse seed={seed}`")
    state, _ = load_checkpoint(source)
    model = load_into(build_model(cfg, data.num_classes, data.channels), state, source).eval()
    retain_images, retain_labels = sample(data.dataset("retain"), RETAIN_SAMPLE, seed + 1)
    forget_images, forget_labels = sample(data.dataset("forget"), FORGET_SAMPLE, seed)
    val_images, val_labels = sample(data.dataset("forget_val"), len(data.dataset("forget_val")), seed)
    retain_features, _ = features(model, retain_images)
    forget_features, _ = features(model, forget_images)
    _, val_predictions = features(model, val_images)
    row = {"validation_images": len(val_labels),
           "validation_accuracy": 100 * float((val_predictions == val_labels).mean())}
    for variant, column in (("ssd", "neighbour_vote"), ("lfssd", "neighbour_vote_lfssd")):
        row[column] = 100 * search_target(model, data, variant, seed)
    for name in LAYERS:
        knn = KNeighborsClassifier(NEIGHBOURS).fit(retain_features[name], retain_labels)
        row[f"knn_{name}"] = 100 * float((knn.predict(forget_features[name]) == forget_labels).mean())
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    retrained = retrained_by_request(args.records, args.seed)
    if not retrained:
        print(f"error: no sub-class runs of seed {args.seed} with a retrained reference under {args.records}",
              file=sys.stderr)
        return 2
    rows = {}
    columns = ("retrained_df_test", "retrained_df_train", "validation_accuracy", *(f"knn_{n}" for n in LAYERS),
               "neighbour_vote", "neighbour_vote_lfssd")
    print(f"{'request':<12}" + "".join(f"{c:>22}" for c in columns))
    for forget, reference in retrained.items():
        try:
            row = {"retrained_df_test": reference["Df-test"], "retrained_df_train": reference["Df-train"],
                   **measure(args.dataset, forget, args.seed, args.root)}
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        rows[forget] = row
        print(f"{forget:<12}" + "".join(f"{row[c]:>22.1f}" for c in columns), flush=True)
    # Judged on Df-train (training images the reference never saw), so no choice here reads the test split.
    within = {estimate: sum(abs(row[estimate] - row["retrained_df_train"]) <= 5 for row in rows.values())
              for estimate in columns[2:]}
    for estimate, count in within.items():
        print(f"{estimate}: within 5 points of the retrained Df-train on {count} of {len(rows)} requests")
    if args.write:
        path = ROOT / "bench" / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        results[f"explore:subclass-target-{args.dataset}-seed{args.seed}"] = {
            "records": str(args.records), "retain_sample": RETAIN_SAMPLE, "forget_sample": FORGET_SAMPLE,
            "neighbours": NEIGHBOURS, "requests": rows,
            "within_5_points": within}
        path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
