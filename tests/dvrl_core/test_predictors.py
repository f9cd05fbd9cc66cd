from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression as ReferenceLogistic
from sklearn.linear_model import Ridge

from dvrl_core import ConfigError, make_predictor


def _classification(n=300, d=8, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((d, classes))
    y = np.argmax(x @ w + rng.gumbel(size=(n, classes)), axis=1)
    return x, y


@pytest.mark.parametrize("classes", [2, 3])
def test_logistic_regression_matches_scikit_learn_on_selected_rows(classes):
    x, y = _classification(classes=classes)
    predictor = make_predictor("logistic_regression", "classification", classes)
    trainer = predictor.trainer(torch.tensor(x), torch.tensor(y))
    selections = (torch.rand(4, len(y), generator=torch.Generator().manual_seed(0)) < 0.7)
    batched = trainer.predict(trainer.fit(selections.float()), torch.tensor(x)).numpy()
    for r in range(4):
        keep = selections[r].numpy()
        reference = ReferenceLogistic(C=1.0, tol=1e-10, max_iter=10_000).fit(x[keep], y[keep])
        assert np.abs(batched[r] - reference.predict_proba(x)).max() < 2e-3


def test_wide_many_class_logistic_regression_matches_scikit_learn():
    # 151 x 10 parameters (some features constant, as border pixels are) and more rows than the
    # preconditioner samples (2,000): the shape of the paper's MNIST -> USPS setting
    rng = np.random.default_rng(1)
    n, d, classes = 2500, 150, 10
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[:, :10] = 0.0
    y = np.argmax(x @ rng.standard_normal((d, classes)) * 0.3
                  + rng.gumbel(size=(n, classes)), axis=1)
    predictor = make_predictor("logistic_regression", "classification", classes, alpha=20.0)
    trainer = predictor.trainer(torch.tensor(x), torch.tensor(y))
    selections = (torch.rand(3, n, generator=torch.Generator().manual_seed(0)) < 0.8).float()
    batched = trainer.predict(trainer.fit(selections), torch.tensor(x[:300])).numpy()
    for r in range(3):
        keep = selections[r].numpy() > 0
        reference = ReferenceLogistic(C=1 / 20.0, tol=1e-10, max_iter=10_000).fit(
            x[keep], y[keep])
        assert np.abs(batched[r] - reference.predict_proba(x[:300])).max() < 2e-3
    single = make_predictor("logistic_regression", "classification", classes, alpha=20.0)
    reference = ReferenceLogistic(C=1 / 20.0, tol=1e-10, max_iter=10_000).fit(x, y)
    assert np.abs(single.fit(x, y).predict(x[:300])
                  - reference.predict_proba(x[:300])).max() < 2e-3


def test_linear_regression_matches_ridge_with_weights():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = x @ rng.standard_normal(5) + 3 + rng.standard_normal(200) * 0.1
    weight = rng.integers(0, 2, 200).astype(float)
    ours = make_predictor("linear_regression", "regression", alpha=1e-6).fit(x, y, weight)
    reference = Ridge(alpha=1e-6).fit(x, y, sample_weight=weight)
    assert np.abs(ours.predict(x) - reference.predict(x)).max() < 1e-3


def test_mlp_learns_and_batched_fits_equal_single_fits():
    x, y = _classification(n=200, d=5)
    mlp = make_predictor("mlp", "classification", 2, epochs=40, random_state=3)
    trainer = mlp.trainer(torch.tensor(x), torch.tensor(y))
    weights = torch.ones(3, len(y))
    weights[1, :50] = 0
    batched = trainer.predict(trainer.fit(weights), torch.tensor(x))
    single = trainer.predict(trainer.fit(weights[1:2]), torch.tensor(x))
    assert torch.allclose(batched[1], single[0], atol=1e-5)
    assert torch.allclose(batched[0], batched[2])  # same data, same start: same model
    accuracy = (batched[0].argmax(-1).numpy() == y).mean()
    assert accuracy > 0.75  # labels carry Gumbel noise; chance is about 0.5


def test_mlp_regression_and_lightgbm_with_sample_weights():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    y = 5 * x[:, 0] + 100
    mlp = make_predictor("mlp", "regression", epochs=50).fit(x, y)
    assert np.abs(mlp.predict(x) - y).mean() < 2.0
    labels = (x[:, 0] > 0).astype(int)
    weight = np.where(np.arange(300) < 150, 1.0, 0.0)
    booster = make_predictor("lightgbm", "classification", 2).fit(x, labels, weight)
    probability = booster.predict(x)
    assert probability.shape == (300, 2)
    assert (probability.argmax(1) == labels).mean() > 0.9


@pytest.mark.parametrize("left_out", [0, 2])
def test_lightgbm_fitted_without_a_class_still_predicts_every_class(left_out):
    """A removal curve or a selection can drop a rare class's rows: the model fitted on the
    rest predicts all three classes' columns, the missing one at 0 (a job once failed here)."""
    x, y = _classification(n=300, classes=3, seed=5)
    keep = (y != left_out).astype(float)
    booster = make_predictor("lightgbm", "classification", 3).fit(x, y, keep)
    probabilities = booster.predict(x)
    assert probabilities.shape == (300, 3)
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert probabilities[:, left_out].max() == 0.0
    seen = y != left_out
    assert (probabilities[seen].argmax(1) == y[seen]).mean() > 0.8
    # with every class present the model is the multi-class one it always was
    full = make_predictor("lightgbm", "classification", 3).fit(x, y).predict(x)
    assert (full.argmax(1) == y).mean() > 0.8 and full.min() > 0


def test_registry_rejects_unknown_names_and_wrong_tasks():
    with pytest.raises(ConfigError, match="unknown predictor"):
        make_predictor("svm", "classification", 2)
    with pytest.raises(ConfigError, match="does not do regression"):
        make_predictor("logistic_regression", "regression")
    with pytest.raises(ConfigError, match="bad parameters"):
        make_predictor("mlp", "classification", 2, depth=3)


@pytest.mark.parametrize("classes", [2, 4])
def test_naive_bayes_matches_scikit_learn_on_every_rollouts_rows(classes):
    from sklearn.naive_bayes import GaussianNB

    x, y = _classification(n=400, classes=classes, seed=3)
    predictor = make_predictor("naive_bayes", "classification", classes)
    trainer = predictor.trainer(torch.tensor(x), torch.tensor(y))
    selections = (torch.rand(5, len(y), generator=torch.Generator().manual_seed(1)) < 0.6)
    batched = trainer.predict(trainer.fit(selections.float()), torch.tensor(x)).numpy()
    for r in range(5):
        keep = selections[r].numpy()
        reference = GaussianNB().fit(x[keep], y[keep]).predict_proba(x)
        assert np.abs(batched[r] - reference).max() < 1e-4


def test_naive_bayes_takes_fractional_weights_and_survives_a_class_left_out():
    from sklearn.naive_bayes import GaussianNB

    x, y = _classification(n=300, classes=3, seed=4)
    weight = np.random.default_rng(0).uniform(0, 3, len(y))
    ours = make_predictor("naive_bayes", "classification", 3).fit(x, y, weight).predict(x)
    reference = GaussianNB().fit(x, y, sample_weight=weight).predict_proba(x)
    assert np.abs(ours - reference).max() < 1e-4
    # a rollout that selected no row of class 2 still gives finite probabilities that sum to 1
    without = (y != 2).astype(float)
    probabilities = make_predictor("naive_bayes", "classification", 3).fit(
        x, y, without).predict(x)
    assert np.isfinite(probabilities).all()
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert probabilities[:, 2].max() < 1e-3


def test_bernoulli_naive_bayes_matches_scikit_learn_on_word_presence():
    """Standardised word counts: a word is present where its count is above zero, which is where
    the standardised column is above its smallest value."""
    from sklearn.naive_bayes import BernoulliNB

    rng = np.random.default_rng(5)
    counts = rng.poisson(0.3, size=(400, 30))
    y = ((counts[:, 0] + counts[:, 1]) > 0).astype(int)
    x = ((counts - counts.mean(0)) / counts.std(0)).astype(np.float32)
    present = (counts > 0).astype(float)
    trainer = make_predictor("bernoulli_naive_bayes", "classification", 2).trainer(
        torch.tensor(x), torch.tensor(y))
    selections = (torch.rand(3, len(y), generator=torch.Generator().manual_seed(2)) < 0.7)
    batched = trainer.predict(trainer.fit(selections.float()), torch.tensor(x)).numpy()
    for r in range(3):
        keep = selections[r].numpy()
        reference = BernoulliNB(alpha=1.0).fit(present[keep], y[keep]).predict_proba(present)
        assert np.abs(batched[r] - reference).max() < 1e-4


def test_naive_bayes_is_classification_only():
    with pytest.raises(ConfigError, match="does not do regression"):
        make_predictor("naive_bayes", "regression")


def test_batched_logistic_fits_of_two_rows_among_150_classes_stay_finite():
    """Rollouts that select two rows of a 150-class table converge at once; the batch's other
    rollouts go on. Those settled fits took further steps along curvature float32 rounds to
    nothing, until their parameters overflowed (a DVRL run failed on it)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(150, 2, generator=generator)
    y = torch.arange(150)
    trainer = make_predictor("logistic_regression", "classification", 150,
                             alpha=15.0, max_iter=30).trainer(x, y)
    for _ in range(25):
        weights = torch.bernoulli(torch.full((32, 150), 0.0067), generator=generator)
        predictions = trainer.predict(trainer.fit(weights), x)
        assert torch.isfinite(predictions).all()
