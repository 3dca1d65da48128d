"""ASSD (``method=assd``) against its reference code's computation, on real digits data.

The reference (if-loops/adaptive-selective-synaptic-dampening, error_unlearning.ipynb; Potion's
``assd_tuning``/``alfssd_tuning`` for the label-free variant) computes the reference importance
over the **retain** loader, drops NaN and inf ratios, takes ``np.nanpercentile`` at
p = 100 - ln(1 + 100 |Df| / (|Dr| + |Df|)) and dampens as SSD with lambda 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import compose_config
from tests.test_cache import context, digits_data, small_cnn
from tests.test_ssd_core import reference_dampen, reference_importances
from unlearning.errors import UserError
from unlearning.jobs.builders import build_method
from unlearning.methods.ssd import SSD, PercentileAlpha


def reference_assd(model, retain: DataLoader, forget: DataLoader, variant: str):
    """The reference code's ASSD: importances over Dr and Df, the length-based percentile of the ratios."""
    original = reference_importances(model, retain, variant)
    sample = reference_importances(model, forget, variant)
    ratios = np.concatenate([(sample[n] / original[n]).flatten().numpy() for n in original])
    ratios = ratios[np.isfinite(ratios)]
    p = 100 - math.log(1 + 100 * len(forget.dataset) / (len(retain.dataset) + len(forget.dataset)))
    alpha = float(np.nanpercentile(ratios, p))
    return reference_dampen(model, original, sample, alpha, 1.0), alpha, p


@pytest.mark.parametrize("variant", ["ssd", "lfssd"])
def test_assd_matches_its_reference_code(variant):
    data, model = digits_data("3"), small_cnn(0)
    loaders = [DataLoader(data.dataset(split), batch_size=64) for split in ("retain", "forget")]
    expected, alpha, p = reference_assd(model, *loaders, variant)
    info = SSD(PercentileAlpha(), variant=variant, cache=False).unlearn(model, data, context(model, None))
    assert info["policy"] == "percentile" and info["reference_split"] == "retain"
    assert info["percentile"] == pytest.approx(p) and info["alpha"] == pytest.approx(alpha, rel=1e-4)
    assert info["parameters_changed"] > 0
    for (name, ours), (_, theirs) in zip(model.named_parameters(), expected.named_parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7, msg=name)


def test_assd_on_d_differs_from_assd_on_dr():
    """reference_split=full compares with imp_D (the paper's SSD reference): another selection."""
    data = digits_data("3")
    on_dr, on_d = small_cnn(0), small_cnn(0)
    info_dr = SSD(PercentileAlpha(), cache=False).unlearn(on_dr, data, context(on_dr, None))
    info_d = SSD(PercentileAlpha(reference_split="full"), cache=False).unlearn(
        on_d, data, context(on_d, None))
    assert info_d["reference_split"] == "full" and "importance_full_time_s" in info_d
    assert info_dr["alpha"] != info_d["alpha"]
    assert any(not torch.equal(a, b) for a, b in zip(on_dr.parameters(), on_d.parameters(), strict=True))


@pytest.mark.parametrize("overrides,words", [
    (["method=assd", "method.alpha=10.0"], ["PercentileAlpha", "chooses alpha itself", "method.alpha=10.0"]),
    (["method=assd", "method.reference_split=test"], ["reference_split='test'", "retain"]),
    (["method=assd", "method.alpha=auto"], ["method.alpha=auto", "PercentileAlpha", "chooses alpha itself"]),
    (["method=ssd", "method.alpha=null"], ["method.alpha is missing"]),
    (["method=ssd", "method/policy=percentile"], ["chooses alpha itself", "method.alpha=10.0"]),
    (["method.policy=percentile"], ["is not a policy", "method/policy=NAME", "fixed, percentile, ptn"]),
])
def test_bad_policy_settings_are_refused(overrides, words):
    """Each policy is checked where the method is built, with the key to change in the message."""
    with pytest.raises(UserError) as error:
        build_method(compose_config("unlearn", overrides))
    for word in words:
        assert word in str(error.value)
