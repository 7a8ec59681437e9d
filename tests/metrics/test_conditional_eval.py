"""Evaluating a class-conditional generator (``gannorm.metrics.evaluate``): the labels G gets (seeded, at the data's
class frequencies), the registered conditional metrics (``intra_cfd``, ``class_acc``), the checks before any
work, and an unconditional generator evaluated as before."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gannorm.data import load_dataset
from gannorm.data.base import Dataset
from gannorm.errors import ConfigError, InputError
from gannorm.metrics.classifier import get_classifier
from gannorm.metrics.evaluate import (GENERATE_BATCH, LABEL_SEED_OFFSET, METRICS, EvalOptions, check_evaluation,
                                      default_metrics, draw_labels, evaluate, generate, real_labels, real_subset)
from gannorm.metrics.frechet import feature_statistics, frechet_distance
from gannorm.training.sample_mode import evaluate_generator

sys.path.insert(0, str(Path(__file__).parent))
from _conditional_eval_child import SHARDED, ClassLookup  # noqa: E402

CHILD = Path(__file__).with_name("_conditional_eval_child.py")

pytestmark = pytest.mark.usefixtures("one_thread")


class Lookup(nn.Module):
    """An unconditional 'generator' returning dataset items chosen by z (its forward takes z only)."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return self.data.get((z[:, 0].abs() * 1e6).long() % len(self.data))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GANNORM_CACHE", str(tmp_path_factory.mktemp("cache")))
    data = load_dataset("digits", resolution=16)
    get_classifier("digits", 16)  # trained once into the module's cache
    yield data
    mp.undo()


OPTS = dict(num_samples=600, num_real=600, progress=False, seed=3)


def test_conditional_metrics_tell_the_right_class_from_the_wrong_one(digits):
    opts = EvalOptions(metrics=["cfd", "intra_cfd", "class_acc"], **OPTS)
    right = evaluate(ClassLookup(digits), digits, 4, opts)
    wrong = evaluate(ClassLookup(digits, offset=1), digits, 4, opts)  # G(z, y) draws class y + 1
    r, w = right["metrics"], wrong["metrics"]
    assert r["class_acc"]["value"] > 0.95 and w["class_acc"]["value"] < 0.05
    assert w["intra_cfd"]["value"] > 10 * r["intra_cfd"]["value"]
    assert w["cfd"]["value"] < 2.0 and r["cfd"]["value"] < 2.0  # the unconditional distance cannot tell them apart
    assert set(r["intra_cfd"]) >= {"value", "min_class_generated", "min_class_real", *(f"class_{k}" for k in range(10))}
    assert r["intra_cfd"]["value"] == pytest.approx(np.mean([r["intra_cfd"][f"class_{k}"] for k in range(10)]))
    p = right["protocol"]
    assert p["num_classes"] == 10 and p["label_seed"] == 3 + LABEL_SEED_OFFSET and "class frequencies" in p["labels"]
    assert p["metrics"]["class_acc"]["num_generated"] == 600 and "num_real" not in p["metrics"]["class_acc"]
    assert METRICS.get("class_acc").lower_is_better is False and METRICS.get("intra_cfd").needs_labels


def test_intra_cfd_is_the_per_class_distance_of_the_classifier_features(digits):
    g = ClassLookup(digits, offset=1)
    res = evaluate(g, digits, 4, EvalOptions(metrics=["intra_cfd"], **OPTS))["metrics"]["intra_cfd"]
    # by hand: the same labels, samples and real subset, the classifier's features, one class at a time
    y = draw_labels(digits.labels, 600, 3 + LABEL_SEED_OFFSET)
    fake = generate(ClassLookup(digits, offset=1), 600, 4, 3 + 1000, labels=y)
    real, _ = real_subset(digits, 600, 3)
    y_real = real_labels(digits, 600, 3)
    clf = get_classifier("digits", 16)
    f_fake, f_real = clf.features(fake).double().numpy(), clf.features(real).double().numpy()
    for k in (0, 4, 9):
        mu1, s1 = feature_statistics(f_fake[y.numpy() == k])
        mu2, s2 = feature_statistics(f_real[y_real.numpy() == k])
        assert res[f"class_{k}"] == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-9)
    assert res["min_class_generated"] == np.bincount(y.numpy(), minlength=10).min()


def test_the_generator_gets_seeded_labels_at_the_data_frequencies(digits):
    g = ClassLookup(digits)
    opts = EvalOptions(metrics=["class_acc"], num_samples=600, progress=False, seed=5)
    first = evaluate_generator(g, "eval", digits, 4, opts)  # through the trainer's sampling view
    assert [len(y) for y in g.seen] == [GENERATE_BATCH, GENERATE_BATCH, 600 - 2 * GENERATE_BATCH]
    got = torch.cat(g.seen)
    idx = torch.randint(len(digits), (600,), generator=torch.Generator().manual_seed(5 + LABEL_SEED_OFFSET))
    assert torch.equal(got, digits.labels[idx])  # the labels of uniformly drawn real items
    g.seen.clear()
    assert evaluate_generator(g, "eval", digits, 4, opts)["metrics"] == first["metrics"]
    assert torch.equal(torch.cat(g.seen), got)  # seeded: the same labels again


def test_draw_labels_follow_the_class_frequencies():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    y = draw_labels(labels, 20000, seed=1)
    freq = np.bincount(y.numpy(), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.9, 0.09, 0.01], atol=0.01)
    assert torch.equal(draw_labels(labels, 50, seed=1), y[:50])  # a prefix of a longer draw


def test_real_labels_are_those_of_the_real_subset(digits):
    x, _ = real_subset(digits, 100, seed=2)
    y = real_labels(digits, 100, seed=2)
    idx = torch.randperm(len(digits), generator=torch.Generator().manual_seed(2))[:100]
    assert torch.equal(x, digits.get(idx)) and torch.equal(y, digits.labels[idx])
    assert len(real_labels(digits, 10**6, seed=2)) == len(digits)


def test_an_unconditional_generator_is_evaluated_as_before(digits):
    res = evaluate(Lookup(digits), digits, 4, EvalOptions(metrics=["cfd"], **OPTS))
    assert not {"num_classes", "label_seed", "labels"} & set(res["protocol"])
    z = torch.randn(600, 4, generator=torch.Generator().manual_seed(3 + 1000))
    fake = torch.cat([Lookup(digits)(c) for c in z.split(GENERATE_BATCH)])
    real = digits.get(torch.randperm(len(digits), generator=torch.Generator().manual_seed(3))[:600])
    clf = get_classifier("digits", 16)
    mu1, s1 = feature_statistics(clf.features(fake).double().numpy())
    mu2, s2 = feature_statistics(clf.features(real).double().numpy())
    assert res["metrics"]["cfd"]["value"] == frechet_distance(mu1, s1, mu2, s2)
    assert default_metrics("digits") == ("cfd", "cis", "ckid")
    assert default_metrics("digits", conditional=True) == ("cfd", "cis", "ckid", "intra_cfd", "class_acc")
    assert default_metrics("cifar10", conditional=True) == ("fid", "is", "kid", "intra_fid")


def test_default_metrics_of_a_conditional_generator_add_the_conditional_ones(digits):
    opts = EvalOptions(num_samples=300, num_real=300, progress=False, protocol={"ckid": {"subsets": 2}})
    res = evaluate(ClassLookup(digits), digits, 4, opts)
    assert list(res["metrics"]) == ["cfd", "cis", "ckid", "intra_cfd", "class_acc"]


def unlabelled(data):
    return Dataset("digits", data.data, "image", labels=None)


@pytest.mark.parametrize("case, message", [
    ("unconditional", "metric class_acc: needs a class-conditional generator (model.num_classes > 0), but this one "
                      "is unconditional; drop class_acc or train a conditional model"),
    ("unlabelled", "metric intra_cfd: needs class labels, but digits has none; drop intra_cfd or use a labelled "
                   "dataset"),
    ("conditional on unlabelled", "the generator is class-conditional (10 classes), but digits has no labels"),
])
def test_conditional_metrics_are_refused_before_any_work(digits, case, message):
    g = ClassLookup(digits)
    data, metrics = digits, ["cfd"]
    if case == "unconditional":
        g, metrics = Lookup(digits), ["cfd", "class_acc"]
    elif case == "unlabelled":
        data, metrics = unlabelled(digits), ["intra_cfd"]
    else:
        data = unlabelled(digits)
    with pytest.raises(ConfigError) as err:
        evaluate(g, data, 4, EvalOptions(metrics=metrics, num_samples=20, progress=False))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not getattr(g, "seen", [])  # nothing was generated
    with pytest.raises(ConfigError, match="needs a class-conditional generator"):
        check_evaluation(digits, EvalOptions(metrics=["intra_cfd"], num_samples=20), num_classes=0)


def test_labels_the_generator_does_not_know_are_refused(digits):
    with pytest.raises(InputError, match=r"digits's labels run from 0 to 9, but the generator knows 5 classes"):
        evaluate(ClassLookup(digits, num_classes=5), digits, 4, EvalOptions(metrics=["cfd"], num_samples=20,
                                                                             progress=False))


def test_too_few_samples_of_a_class_is_a_one_line_error(digits):
    with pytest.raises(InputError, match=r"intra-class FID: class \d has [01] generated sample\(s\), it needs at "
                                         "least 2"):
        evaluate(ClassLookup(digits), digits, 4, EvalOptions(metrics=["intra_cfd"], num_samples=12, num_real=300,
                                                              progress=False))


@pytest.mark.slow
def test_a_sharded_conditional_evaluation_equals_one_process(digits, tmp_path):
    """Two gloo ranks: each generates its shard of G(z, y) with its rows of the labels; the features are gathered in
    order and the labels, drawn whole on every rank, follow the same order: the numbers are one process's."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(CHILD), str(tmp_path)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert [r["seen"] for r in ranks] == [2 * GENERATE_BATCH, 600 - 2 * GENERATE_BATCH]  # each its own shard
    one = evaluate(ClassLookup(digits), digits, 4, EvalOptions(**SHARDED))["metrics"]
    for r in ranks:
        assert r["result"]["protocol"]["ranks"] == 2 and r["result"]["protocol"]["num_classes"] == 10
        got = r["result"]["metrics"]
        assert set(got) == set(one)
        for name, values in one.items():
            for key, value in values.items():
                assert got[name][key] == pytest.approx(value, rel=1e-6, abs=1e-12), (name, key)
