"""Every bad input is answered with one paragraph, exit status 2, no traceback and no results.

The table below drives two tests: all cases run in this process exactly as the entry points
do (``preflight``, compose, ``run_job``), which takes about a second each; the cases marked
``cli`` also run as real ``unlearn.py``/``train.py`` subprocesses to prove the exit status
and the stderr users see (the whole table through subprocesses is ``slow``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import QUIET, ROOT, run_cli
from tests.fixtures.cifar_files import trust_generated_files, write_cifar10
from tests.reliability_support import (
    TINY,
    files_under,
    make_tiny_root,
    result_like,
    run_entry,
    save_random_checkpoint,
    tiny_checkpoint,
)
from tests.test_safe_loading import write_payload


@dataclass(frozen=True)
class Case:
    """One bad input: the entry point, its overrides ({placeholders} filled from the inputs) and what the message must say."""

    id: str
    entry: str
    overrides: tuple[str, ...]
    says: tuple[str, ...]
    cli: bool = False
    env: dict = field(default_factory=dict)
    needs_cifar: bool = False
    skip: str = ""


def case(id, entry, overrides, says, **kw) -> Case:
    return Case(id, entry, tuple(overrides), tuple(says), **kw)


def sys_is_read_only() -> bool:
    try:
        Path("/sys/unlearning-probe").mkdir()
    except OSError:
        return True
    Path("/sys/unlearning-probe").rmdir()
    return False


U, T = "unlearn", "train"
CASES = [
    # config group choices and settings (checked before Hydra starts)
    case("unknown-dataset", U, ["dataset=mnist"], ["unknown dataset 'mnist'", "cifar10", "digits", "imagefolder"],
         cli=True),
    case("unknown-model", U, ["model=resnet50"], ["unknown model 'resnet50'", "resnet18", "vit"]),
    case("unknown-method", U, ["method=nope"], ["unknown method 'nope'", "baseline", "lfssd", "ssd"], cli=True),
    case("unknown-task", U, ["task=partial"], ["unknown task 'partial'", "fullclass", "random", "subclass"]),
    case("unknown-method-in-sweep", U, ["method=ssd,nope"], ["unknown method 'nope'", "lfssd"]),
    case("misspelt-setting", U, ["method.alhpa=3"], ["unknown setting method.alhpa", "alpha", "lambda_"]),
    case("train-unknown-model", T, ["model=alexnet"], ["unknown model 'alexnet'", "resnet18"]),
    # what to forget
    case("unknown-class", U, ["task.forget=seven"], ["unknown class 'seven'", "Valid names: 0, 1, 2"], cli=True),
    case("class-index-out-of-range", U, ["task.forget=12"], ["index 12 is out of range", "0..9"]),
    case("unknown-subclass", U, ["task=subclass", "task.forget=eleven"], ["unknown sub-class 'eleven'", "0, 1"]),
    case("subclass-without-coarse-cifar10", U, ["dataset=cifar10", "task=subclass", "task.forget=cat",
                                               "paths.data_dir={cifar}", "model.image_size=16"],
         ["task=subclass needs a dataset with coarse labels", "cifar100", "task=fullclass"], needs_cifar=True),
    case("subclass-without-coarse-imagefolder", U, ["dataset=imagefolder", "dataset.root={images_two}",
                                                   "task=subclass", "task.forget=alice"],
         ["task=subclass needs a dataset with coarse labels", "cifar100"]),
    case("subclass-no-default-target", U, ["dataset=imagefolder", "dataset.root={images_two}", "task=subclass"],
         ["task=subclass has no default target", "task.forget=NAME"]),
    # the held-out validation split and the recipe's choice of epoch
    case("validation-takes-everything", T, ["dataset.split.validation=1797"],
         ["dataset.split.validation=1797", "1437 training images", "at least one image per class"]),
    case("train-subset-too-large", T, ["dataset.split.train=5000"],
         ["dataset.split.train=5000 is impossible", "1293 training images remain"]),
    case("unknown-keep", T, ["dataset.training.keep=best_test"], ["dataset.training.keep", "last", "best"]),
    case("fashion-without-files", T, ["dataset=fashion_mnist", "paths.data_dir={empty_dir}",
                                      "dataset.builder.download=false", "dataset.builder.system_dir=null"],
         ["Fashion-MNIST files are missing", "apt-get install dataset-fashion-mnist"]),
    case("random-zero", U, ["task=random", "task.n_forget=0"], ["n_forget=0 is impossible", "between 1 and 1292"]),
    case("random-larger-than-D", U, ["task=random", "task.n_forget=5000"],
         ["n_forget=5000 is impossible", "1293 training samples", "between 1 and 1292"]),
    case("random-fraction", U, ["task=random", "task.n_forget=null", "task.fraction=1.5"],
         ["task.fraction must lie strictly between 0 and 1"]),
    # hyperparameters
    case("alpha-negative", U, ["method.alpha=-1"], ["alpha must be a positive, finite number", "paper: 10"]),
    case("alpha-zero", U, ["method.alpha=0"], ["alpha must be a positive, finite number"]),
    case("alpha-nan", U, ["method.alpha=nan"], ["alpha must be a positive, finite number", "nan"]),
    case("alpha-string", U, ["method.alpha=abc"], ["alpha must be a positive number", "'abc'"]),
    case("lambda-negative", U, ["method.lambda_=-0.5"], ["lambda_ must be a positive, finite number"]),
    case("lambda-zero", U, ["method=lfssd", "method.lambda_=0"], ["lambda_ must be a positive, finite number"]),
    case("lambda-nan", U, ["method.lambda_=nan"], ["lambda_ must be a positive, finite number"]),
    case("lambda-string", U, ["method.lambda_=big"], ["lambda_ must be a positive number", "'big'"]),
    case("unknown-variant", U, ["method.variant=xssd"], ["method.variant='xssd' is unknown", "ssd, lfssd"]),
    case("importance-batch-zero", U, ["method.batch_size=0"], ["method.batch_size must be a whole number >= 1"]),
    case("importance-batch-string", U, ["method.batch_size=abc"], ["method.batch_size must be a whole number", "'abc'"]),
    case("seed-not-a-number", U, ["seed=abc"], ["seed must be a whole number", "'abc'"]),
    case("batch-size-zero", U, ["dataset.batch_size=0"], ["dataset.batch_size must be a whole number >= 1", "got 0"]),
    case("eval-batch-size-string", U, ["dataset.eval_batch_size=big"], ["dataset.eval_batch_size must be a whole number"]),
    case("workers-negative", U, ["dataset.num_workers=-1"], ["dataset.num_workers must be a whole number >= 0"]),
    case("image-size-string", U, ["model.image_size=large"], ["model.image_size / dataset.image_size", "'large'"]),
    case("digits-test-fraction", U, ["dataset.builder.test_fraction=2"],
         ["dataset.builder.test_fraction must lie strictly between 0 and 1", "default 0.2"]),
    case("cache-limit-string", U, ["cache_max_gb=lots"], ["cache_max_gb must be a positive number", "null"]),
    case("train-epochs-string", T, ["model=resnet18", "dataset.training.epochs=many"],
         ["dataset.training.epochs", "must be a whole number >= 1", "'many'"]),
    # checkpoints
    case("checkpoint-other-dataset", U, ["checkpoint={cifar10_checkpoint}"],
         ["does not match this run", "dataset is 'cifar10'", "'digits'", "train.py"]),
    case("checkpoint-other-class-count", U, ["checkpoint={coarse}"],
         ["does not match this run", "num_classes is 5", "needs 10", "label_kind is 'coarse'"]),
    case("checkpoint-truncated", U, ["checkpoint={truncated}"], ["truncated or corrupt", "train.py"]),
    case("checkpoint-garbage-pt", U, ["checkpoint={garbage_pt}"], ["truncated or corrupt"]),
    case("checkpoint-corrupt-metadata", U, ["checkpoint={bad_metadata}"], ["metadata", "is corrupt"]),
    case("checkpoint-runs-code", U, ["checkpoint={code_ckpt}"], ["refused", "arbitrary code", "posix.system"],
         cli=True),
    case("checkpoint-missing", U, ["checkpoint={missing}"], ["does not exist", "checkpoint=PATH"]),
    case("checkpoint-folder-without-weights", U, ["checkpoint={empty_dir}"], ["has no model.safetensors"]),
    case("no-trained-model-and-no-training", U, ["paths.checkpoint_dir={missing}"],
         ["no trained model at", "python train.py", "train_if_missing=true"]),
    # the gold-standard evaluation
    case("reference-unknown", U, ["evaluation.reference=oracle"], ["evaluation.reference='oracle' is unknown",
                                                                    "none, retrain"], cli=True),
    case("probe-not-a-bool", U, ["evaluation.probe=maybe"], ["evaluation.probe must be true or false", "'maybe'"]),
    case("reference-path-without-reference", U, ["evaluation.reference_checkpoint={fine}"],
         ["evaluation.reference_checkpoint=", "evaluation.reference=retrain"]),
    case("reference-is-a-source-model", U, ["evaluation.reference=retrain", "evaluation.reference_checkpoint={fine}"],
         ["is not a retrained reference", "leave evaluation.reference_checkpoint unset"]),
    case("reference-of-another-forget-set", U, ["evaluation.reference=retrain",
                                                "evaluation.reference_checkpoint={other_reference}"],
         ["was retrained without another forget set", "'class 7'", "'class 3'"]),
    # data
    case("cifar-missing-offline", U, ["dataset=cifar10", "dataset.builder.download=false", "paths.data_dir={missing}"],
         ["files are missing", "Download cifar-10-python.tar.gz", "dataset.root=PATH"]),
    case("cifar-root-is-a-file", T, ["dataset=cifar10", "dataset.builder.download=false", "paths.data_dir={file}"],
         ["CIFAR10 files are missing", "Download cifar-10-python.tar.gz"]),
    case("imagefolder-missing", U, ["dataset=imagefolder", "dataset.root={missing}", "task.forget=0"],
         ["image folder", "does not exist", "one sub-folder of images per class"]),
    case("imagefolder-empty", U, ["dataset=imagefolder", "dataset.root={empty_dir}", "task.forget=0"],
         ["holds no usable images", "one sub-folder per class"]),
    case("imagefolder-single-class", T, ["dataset=imagefolder", "dataset.root={images_one}"],
         ["has 1 class(es)", "at least two class sub-folders"]),
    case("train-unknown-labels", T, ["labels=medium"], ["labels='medium' is unknown", "fine", "coarse"]),
    case("train-coarse-without-coarse", T, ["dataset=cifar10", "labels=coarse", "paths.data_dir={cifar}",
                                           "model.image_size=16"],
         ["has no coarse labels", "fine"], needs_cifar=True),
    # models, devices, output
    case("vit-pretrained-offline", T, ["model=vit", "model.pretrained=no-such-org/no-such-vit", "model.image_size=16"],
         ["cannot load the ViT hub id 'no-such-org/no-such-vit'", "model.pretrained=PATH", "model.pretrained=null"],
         env={"HF_HUB_OFFLINE": "1"}),
    case("vit-pretrained-missing-folder", T, ["model=vit", "model.pretrained={missing}", "model.image_size=16"],
         ["cannot load the ViT local directory", "does not exist", "model.pretrained=PATH"]),
    case("gpu-without-gpu", U, ["trainer.accelerator=gpu"], ["trainer settings do not work here", "trainer.accelerator=gpu",
                                                 "trainer=cpu"],
         skip="a GPU is present" if torch.cuda.is_available() else ""),
    case("output-under-a-file", U, ["hydra.run.dir={file}/run"], ["cannot write the output folder", "is a file",
                                                                    "hydra.run.dir=PATH"], cli=True),
    case("output-not-writable", U, ["hydra.run.dir=/sys/unlearning-test/run"],
         ["cannot write the output folder", "not writable", "hydra.run.dir=PATH"],
         skip="" if sys_is_read_only() else "/sys is writable here"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Every bad file and folder the table refers to, made once."""
    from PIL import Image

    base = tmp_path_factory.mktemp("bad_inputs")
    root = make_tiny_root(base / "tiny")
    ckpts = root / "checkpoints"
    fine = tiny_checkpoint(root)
    other = save_random_checkpoint(base / "other", dataset="cifar10", channels=3)
    truncated = base / "truncated"
    shutil.copytree(fine, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    garbage = base / "garbage" / "model.pt"
    garbage.parent.mkdir()
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    shutil.copy(fine / "metadata.json", garbage.parent)
    bad_metadata = base / "bad_metadata"
    shutil.copytree(fine, bad_metadata)
    (bad_metadata / "metadata.json").write_text('{"dataset": "digits", ')
    code = base / "code" / "model.ckpt"
    code.parent.mkdir()
    write_payload(code, base / "MARKER", "lightning")
    shutil.copy(fine / "metadata.json", code.parent)
    other_reference = base / "other_reference"
    shutil.copytree(fine, other_reference)
    metadata = json.loads((other_reference / "metadata.json").read_text())
    (other_reference / "metadata.json").write_text(json.dumps({**metadata, "reference": "retrain", "task": "fullclass",
                                                               "forget": "class 7", "forget_digest": "0" * 40}))
    empty = base / "empty"
    empty.mkdir()
    rng = np.random.default_rng(0)
    for folder, classes in (("images_one", ["alice"]), ("images_two", ["alice", "bob"])):
        for name in classes:
            (base / folder / name).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(base / folder / name / f"{i}.png")
    a_file = base / "a_file"
    a_file.write_text("not a folder\n")
    return {"ckpts": str(ckpts), "fine": str(fine), "coarse": str(tiny_checkpoint(root, "coarse")),
            "cifar10_checkpoint": str(other), "truncated": str(truncated), "garbage_pt": str(garbage),
            "bad_metadata": str(bad_metadata), "code_ckpt": str(code), "marker": str(base / "MARKER"),
            "empty_dir": str(empty), "images_one": str(base / "images_one"), "images_two": str(base / "images_two"),
            "file": str(a_file), "other_reference": str(other_reference), "missing": str(base / "does-not-exist"), "base": str(base)}


def prepared(case: Case, inputs: dict, tmp_path: Path, monkeypatch) -> list[str]:
    """The case's full override list for a run rooted at ``tmp_path``."""
    if case.skip:
        pytest.skip(case.skip)
    values = dict(inputs)
    if case.needs_cifar:
        values["cifar"] = str(tmp_path / "cifar")
        write_cifar10(tmp_path / "cifar")
        trust_generated_files(monkeypatch, tmp_path / "cifar")
    base = [*TINY, f"paths.checkpoint_dir={inputs['ckpts']}"] if case.entry == U else [
        "model=vit_tiny", *QUIET, "dataset.training.epochs=1"]
    return [*base, f"paths.root_dir={tmp_path}", *(o.format(**values) for o in case.overrides)]


def check_answer(case: Case, code: int, stderr: str, new_files: set[str], inputs: dict) -> None:
    assert code == 2, f"{case.id}: exit status {code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    message = stderr.strip()
    assert message.startswith("error: ") or "\nerror: " in message, stderr
    paragraph = message[message.index("error: "):]
    assert "\n\n" not in paragraph, f"more than one paragraph:\n{paragraph}"
    flat = " ".join(paragraph.split())
    assert " ".join(stderr.split()).count(flat[7:60]) == 1, f"{case.id}: the message is printed more than once"
    missing = [text for text in case.says if text not in flat]
    assert not missing, f"{case.id}: the message does not say {missing}:\n{flat}"
    assert result_like(new_files) == [], f"files left that look like results: {result_like(new_files)}"
    assert not Path(inputs["marker"]).exists(), "a checkpoint's pickled payload ran"


def test_table_is_big_enough():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert sum(c.cli for c in CASES) >= 4


def test_the_counts_docs_quote_about_this_table_are_its_own():
    """docs/reliability.md says how many bad inputs there are and how many run as subprocesses where."""
    text = " ".join((ROOT / "docs" / "reliability.md").read_text().split())
    quoted = re.search(r"a table of (\d+) bad inputs", text)
    split = re.search(r"(\d+) also run as real subprocesses in the default suite, the other (\d+) under `slow`", text)
    assert quoted and split, "docs/reliability.md no longer quotes the counts this test checks: update the test"
    assert int(quoted.group(1)) == len(CASES)
    assert int(split.group(1)) == sum(c.cli for c in CASES)
    assert int(split.group(2)) == sum(not c.cli for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case, inputs, tmp_path, capsys, monkeypatch):
    overrides = prepared(case, inputs, tmp_path, monkeypatch)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before, before_inputs = files_under(tmp_path), files_under(Path(inputs["base"]))
    capsys.readouterr()
    code = run_entry(case.entry, overrides, tmp_path / "run")
    _, stderr = capsys.readouterr()
    new = (files_under(tmp_path) - before) | (files_under(Path(inputs["base"])) - before_inputs)
    check_answer(case, code, stderr, new, inputs)


def run_cases_as_cli(cases: list[Case], inputs: dict, tmp_path: Path, monkeypatch) -> None:
    """Each case as a real subprocess (two at a time), checked like the in-process runs."""
    jobs = []
    for item in cases:
        root = tmp_path / item.id
        root.mkdir()
        overrides = prepared(item, inputs, root, monkeypatch)
        if not any(o.startswith("hydra.run.dir=") for o in overrides):
            overrides.append(f"hydra.run.dir={root / 'run'}")
        jobs.append((item, root, overrides))
    before_inputs = files_under(Path(inputs["base"]))
    env_base = {"HYDRA_FULL_ERROR": ""}

    def run(job):
        item, root, overrides = job
        before = files_under(root)
        result = run_cli(f"{item.entry}.py", *overrides, root=root, timeout=300, env={**env_base, **item.env})
        return item, result, files_under(root) - before

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, jobs))
    new_inputs = files_under(Path(inputs["base"])) - before_inputs
    for item, result, new in outcomes:
        check_answer(item, result.returncode, result.stderr, new | new_inputs, inputs)


def test_bad_input_cli(inputs, tmp_path, monkeypatch):
    """The cases marked ``cli``, as subprocesses: exit status 2 and a clean stderr."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    run_cases_as_cli([c for c in CASES if c.cli and not c.skip], inputs, tmp_path, monkeypatch)


@pytest.mark.slow
def test_bad_input_cli_whole_table(inputs, tmp_path, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    run_cases_as_cli([c for c in CASES if not c.cli and not c.skip], inputs, tmp_path, monkeypatch)


@pytest.mark.parametrize("target", ["empty", "missing"])
def test_report_over_nothing(tmp_path, target):
    """``python -m unlearning.report`` over an empty or missing folder: non-zero exit, one paragraph."""
    folder = tmp_path / "runs"
    if target == "empty":
        folder.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run([sys.executable, "-m", "unlearning.report", str(folder)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(folder) in " ".join(result.stderr.split()) and "results.json" in result.stderr
    assert "\n\n" not in result.stderr.strip()
    flat = " ".join(result.stderr.split())
    assert flat.startswith("error: ") and flat.count(flat[7:60]) == 1, "one paragraph, printed once"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
