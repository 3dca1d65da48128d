# Everything a new user or CI needs: `make demo`, `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVICE ?= cpu

.PHONY: install fashion-data demo test test-e2e test-all test-slow test-slurm lint bench recipe digits-table fashion-fullclass-table fashion-subclass-table fashion-methods-table fashion-ulira-table fashion-random-table fashion-random-100-table fashion-random-auto-table fashion-baselines-table digits-methods-table digits-zeroshot-table digits-poison-table digits-subclass-table tables clean-outputs

# Creates .venv and installs the package with its dev tools; quick when nothing changed.
install: $(STAMP) fashion-data
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Fashion-MNIST's original files (the benchmark, docs/benchmark.md) from Debian's dataset-fashion-mnist:
# installed when missing and make runs as root (as CI does); otherwise a note, and its tests skip.
FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
fashion-data:
	@test -f $(FASHION) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	    echo "warning: apt-get could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; \
	  else \
	    echo "note: Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist); its tests skip"; \
	  fi; }

# Train ResNet18 on the bundled digits if needed, then forget digit 3 with the paper's SSD and
# with the hands-free mode, side by side (python -m unlearning.demo; overrides pass on via ARGS=...).
demo: install
	$(PY) -m unlearning.demo $(ARGS)

# The default suite (about 20 minutes on 2 cores from nothing, training the digits models included; README "Tests").
test: install
	$(PY) -m pytest -q

# Everything: default suite plus slow, distributed and SLURM tests (CI runs `test` and `test-slurm`).
test-all: install
	$(PY) -m pytest -q -m "" --durations=15

# The heaviest end-to-end runs, each the only test of its path (the demo, two processes sharing one
# retrained reference, Potion through the CLI, bit-identity across processes); CI runs them.
test-e2e: install
	$(PY) -m pytest -q -m e2e

test-slow: install
	$(PY) -m pytest -q -m "slow or distributed"

test-slurm: install
	$(PY) -m pytest -q -m slurm

lint: install
	$(VENV)/bin/ruff check src tests bench train.py unlearn.py audit.py

bench: install
	$(PY) -m bench --device $(DEVICE)

# The recipes over training seeds 0-4 (digits ~20 s a model, Fashion-MNIST ~5.4 min), recorded in
# bench/results.json; exit 1 when the floor, the spread (1.5 points) or the convergence (1 point) fails;
# then whether the Fashion-MNIST models memorise (the original's attack AUC on random requests, seeds 0-2).
recipe: install
	$(PY) -m bench.recipe --write
	$(PY) -m bench.recipe --dataset fashion_mnist --write
	$(PY) -m bench.memorisation --dataset fashion_mnist --write

# Regenerate every committed report under results/ and the tables README.md and docs/ embed from them.
tables: install
	$(PY) -m unlearning.report.records sync

# The benchmark's full-class table (README "Results on Fashion-MNIST"): per training seed 40 runs +
# 10 retrained references + the source model (70 minutes for seed 0 on 2 cores), swept and exported
# one seed at a time into results/fashion-fullclass/runs/seed-N, so that a seed is a sitting:
#   make fashion-fullclass-table FULLCLASS_SEEDS=1
FULLCLASS_SEEDS ?= 0 1 2
# A table swept one training seed per sitting: $(1) the experiment, $(2) its records' name under results/
# and outputs/tables/, $(3) the seeds, $(4) the command stored in command.txt, $(5) overrides added to the
# experiment (optional). Each seed is exported as its own part, results/$(2)/runs/seed-N, then every
# embedded table is regenerated.
comma := ,
define per_seed_table
@for seed in $(3); do \
    $(PY) unlearn.py -m experiment=$(1) seed=$$seed $(5) trainer.enable_progress_bar=false \
        hydra.sweep.dir=outputs/tables/$(2)/seed-$$seed && \
    $(PY) -m unlearning.report.records export outputs/tables/$(2)/seed-$$seed \
        $(2) --part seed-$$seed --command "$(4)" \
    || exit 1; \
done
$(PY) -m unlearning.report.records sync
endef

fashion-fullclass-table: install
	$(call per_seed_table,fashion_fullclass,fashion-fullclass,$(FULLCLASS_SEEDS),make fashion-fullclass-table FULLCLASS_SEEDS='0 1 2')

# The benchmark's every-method table (README "Results on Fashion-MNIST"): every method at its published
# defaults forgetting Shirt (experiment=fashion_methods), SSD and LFSSD also hands-free, ASSD with both
# references, cold runs against the model retrained without Shirt; one training seed per sitting, each
# exported as its own part, results/fashion-methods/runs/seed-N:   make fashion-methods-table METHODS_SEEDS=0
METHODS_SEEDS ?= 0 1 2
fashion-methods-table: install
	@for seed in $(METHODS_SEEDS); do \
	    out=outputs/tables/fashion-methods/seed-$$seed; \
	    run="$(PY) unlearn.py -m experiment=fashion_methods seed=$$seed trainer.enable_progress_bar=false"; \
	    $$run hydra.sweep.dir=$$out/1-fixed && \
	    $$run method=ssd,lfssd method.alpha=auto hydra.sweep.dir=$$out/2-auto && \
	    $$run method=assd method.reference_split=retain,full hydra.sweep.dir=$$out/3-assd && \
	    $(PY) -m unlearning.report.records export $$out fashion-methods --part seed-$$seed \
	        --command "make fashion-methods-table METHODS_SEEDS='0 1 2'" \
	    || exit 1; \
	done
	$(PY) -m unlearning.report.records sync

# U-LiRA on the benchmark (docs/evaluation.md): 8 shadow models on random halves of D, each unlearning the
# 100-image request of training seed 0, for the original (nothing unlearned), SSD and LFSSD; the shadows
# are trained once (about 20 minutes on 2 cores) and reused by every method. Records in results/fashion-ulira.
ULIRA_METHODS ?= baseline,ssd,lfssd
fashion-ulira-table: install
	$(PY) audit.py -m dataset=fashion_mnist_v1 method=$(ULIRA_METHODS) logger=none trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/fashion-ulira
	$(PY) -m unlearning.report.records export outputs/tables/fashion-ulira fashion-ulira \
	    --command "make fashion-ulira-table"
	$(PY) -m unlearning.report.records sync

# The benchmark's sub-class table: every garment forgotten inside its coarse group (experiment=fashion_subclass),
# one training seed per sitting like the full-class table (36 runs + 9 references per seed), each exported as
# results/fashion-subclass/runs/seed-N:   make fashion-subclass-table SUBCLASS_SEEDS=0
SUBCLASS_SEEDS ?= 0 1 2
fashion-subclass-table: install
	$(call per_seed_table,fashion_subclass,fashion-subclass,$(SUBCLASS_SEEDS),make fashion-subclass-table SUBCLASS_SEEDS='0 1 2')

# The benchmark's random-forgetting table (README "Results on Fashion-MNIST"): 1,000 random images
# forgotten by SSD and LFSSD beside the original, over training seeds 0-2, against retraining (9 runs +
# 3 references, about 20 minutes on 2 cores once the source models exist), then its records into results/.
fashion-random-table: install
	$(PY) unlearn.py -m experiment=fashion_random trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/fashion-random
	$(PY) -m unlearning.report.records export outputs/tables/fashion-random fashion-random \
	    --command "make fashion-random-table"
	$(PY) -m unlearning.report.records sync

# The same with 100 random images (the second size of issue 27's random-forgetting table): 9 runs + 3
# references of about 4.5 minutes each, then its records into results/.
fashion-random-100-table: install
	$(PY) unlearn.py -m experiment=fashion_random task.n_forget=100 trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/fashion-random-100
	$(PY) -m unlearning.report.records export outputs/tables/fashion-random-100 fashion-random-100 \
	    --command "make fashion-random-100-table"
	$(PY) -m unlearning.report.records sync

# The hands-free mode on the same random requests (issue 31): SSD and LFSSD with method.alpha=auto, which
# aims Df at the validation split's accuracy (docs/auto_ssd.md), 1,000 and 100 images against the same
# references as fashion-random-table and fashion-random-100-table (trained here when missing: 4 runs and 2
# references, about 20 minutes a seed on 2 cores), one training seed per sitting, each a part of
# results/fashion-random-auto:
#   make fashion-random-auto-table RANDOM_AUTO_SEEDS=0
RANDOM_AUTO_SEEDS ?= 0 1 2
fashion-random-auto-table: install
	$(call per_seed_table,fashion_random,fashion-random-auto,$(RANDOM_AUTO_SEEDS),make fashion-random-auto-table RANDOM_AUTO_SEEDS='0 1 2',task.n_forget=1000$(comma)100 method=ssd$(comma)lfssd method.alpha=auto)

# The benchmark's baselines on the same random-forgetting requests (README "Results on Fashion-MNIST"):
# FT, RL, GA, NegGrad+, l1-sparse and IU over training seeds 0-2, against the same references (18 runs,
# about 70 minutes on 2 cores once fashion-random-table has trained the references).
fashion-baselines-table: install
	$(PY) unlearn.py -m experiment=fashion_baselines trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/fashion-baselines
	$(PY) -m unlearning.report.records export outputs/tables/fashion-baselines fashion-baselines \
	    --command "make fashion-baselines-table"
	$(PY) -m unlearning.report.records sync

# The README's per-digit SSD/LFSSD table: 120 runs over training seeds 0-2 against the retrained
# reference of each request (trains what is missing: 3 source models and 30 references of about 20 s
# each; the runs about 15 minutes on 2 cores), then its records into results/ and the tables.
digits-table: install
	$(PY) unlearn.py -m seed=0,1,2 task.forget=0,1,2,3,4,5,6,7,8,9 method=ssd,lfssd method.alpha=10,auto \
	    evaluation.reference=retrain logger=none trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/digits-ssd-gold
	$(PY) -m unlearning.report.records export outputs/tables/digits-ssd-gold digits-ssd-gold --command "make digits-table"
	$(PY) -m unlearning.report.records sync

# README "Every method on digits": every method at its published defaults forgetting digit 3, SSD and LFSSD also
# hands-free, ASSD with both references, over training seeds 0-2, each against the retrained reference, cold
# (cache=false); 45 runs (about 40 minutes on 2 cores), then its records into results/.
DIGITS_METHODS := task.forget=3 seed=0,1,2 cache=false evaluation.reference=retrain logger=none trainer.enable_progress_bar=false
digits-methods-table: install
	$(PY) unlearn.py -m method=baseline,retrain,finetune,badteacher,amnesiac,unsir,scrub,salun,jit,ssd,lfssd \
	    $(DIGITS_METHODS) hydra.sweep.dir=outputs/tables/digits-methods/1-fixed
	$(PY) unlearn.py -m method=ssd,lfssd method.alpha=auto $(DIGITS_METHODS) hydra.sweep.dir=outputs/tables/digits-methods/2-auto
	$(PY) unlearn.py -m method=assd method.reference_split=retain,full $(DIGITS_METHODS) \
	    hydra.sweep.dir=outputs/tables/digits-methods/3-assd
	$(PY) -m unlearning.report.records export outputs/tables/digits-methods digits-methods --command "make digits-methods-table"
	$(PY) -m unlearning.report.records sync

# README "Zero-shot unlearning": JiT, GKT and EMMN (lightened for CPUs) beside amnesiac, SSD and retraining, digit 3,
# training seeds 0-2, against the retrained reference (experiment=digits_zeroshot, 18 runs).
digits-zeroshot-table: install
	$(PY) unlearn.py -m experiment=digits_zeroshot logger=none trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/digits-zeroshot
	$(PY) -m unlearning.report.records export outputs/tables/digits-zeroshot digits-zeroshot --command "make digits-zeroshot-table"
	$(PY) -m unlearning.report.records sync

# README "Poisoned and mislabelled data": the poisoned digits models healed by every method with a tenth of the
# poisons identified, SSD, ASSD and Potion with half and all of them (39 runs), then Potion without its validation
# guard (the code's search) on the same requests (9 runs); seeds 0-2.
DIGITS_POISON := experiment=digits_poison logger=none trainer.enable_progress_bar=false
digits-poison-table: install
	$(PY) unlearn.py -m $(DIGITS_POISON) task.identified=0.1 hydra.sweep.dir=outputs/tables/digits-poison/1-tenth
	$(PY) unlearn.py -m $(DIGITS_POISON) task.identified=0.5,1.0 method=ssd,assd,potion \
	    hydra.sweep.dir=outputs/tables/digits-poison/2-more
	$(PY) unlearn.py -m $(DIGITS_POISON) method=potion method.policy.max_validation_drop=null task.identified=0.1,0.5,1.0 \
	    hydra.sweep.dir=outputs/tables/digits-poison-unguarded
	$(PY) -m unlearning.report.records export outputs/tables/digits-poison digits-poison --command "make digits-poison-table"
	$(PY) -m unlearning.report.records export outputs/tables/digits-poison-unguarded digits-poison-unguarded \
	    --command "make digits-poison-table"
	$(PY) -m unlearning.report.records sync

# docs/results.md "Sub-class forgetting": one digit of each pair forgotten by SSD and LFSSD at alpha 10 and alpha=auto
# on the coarse-label models of seeds 0-2, each against the model retrained without that digit (60 runs, 15
# references, 3 coarse models; about 15 minutes on 2 cores), then its records into results/.
digits-subclass-table: install
	$(PY) unlearn.py -m seed=0,1,2 task=subclass task.forget=1,3,5,7,9 method=ssd,lfssd method.alpha=10,auto \
	    evaluation.reference=retrain logger=none trainer.enable_progress_bar=false \
	    hydra.sweep.dir=outputs/tables/digits-ssd-subclass
	$(PY) -m unlearning.report.records export outputs/tables/digits-ssd-subclass digits-ssd-subclass \
	    --command "make digits-subclass-table"
	$(PY) -m unlearning.report.records sync
