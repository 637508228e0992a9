import numpy as np
import pytest

from causalguard.graphs.survey.reliability import balanced_halves, cronbach_alpha, split_half
from causalguard.method_choice import choose_method


def test_alpha_is_high_for_consistent_items_and_low_for_noise() -> None:
    rng = np.random.default_rng(0)
    trait = rng.normal(size=(200, 1))
    consistent = trait + 0.3 * rng.normal(size=(200, 8))
    noise = rng.normal(size=(200, 8))
    assert cronbach_alpha(consistent) > 0.95
    assert abs(cronbach_alpha(noise)) < 0.2
    assert np.isnan(cronbach_alpha(np.ones((10, 4))))


def test_alpha_matches_the_textbook_formula() -> None:
    x = np.array([[1, 2, 3], [2, 3, 3], [3, 3, 5], [4, 5, 4]], dtype=float)
    k = 3
    expected = k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / x.sum(axis=1).var(ddof=1))
    assert cronbach_alpha(x) == pytest.approx(expected)


def test_halves_are_balanced_in_polarity_and_split_half_is_corrected() -> None:
    polarities = [1, -1] * 6
    first, second = balanced_halves(polarities)
    assert sorted(first + second) == list(range(12))
    assert sum(polarities[i] for i in first) == 0 and sum(polarities[i] for i in second) == 0
    rng = np.random.default_rng(1)
    trait = rng.normal(size=(100, 1))
    scores = trait + 0.5 * rng.normal(size=(100, 12))
    r = np.corrcoef(scores[:, first].mean(1), scores[:, second].mean(1))[0, 1]
    assert split_half(scores, polarities) == pytest.approx(2 * r / (1 + r))


def test_method_choice_prefers_validity_then_reliability() -> None:
    def report(validity: float, alpha: float) -> dict:
        return {"summary": {"validity": validity, "median_alpha": alpha}}

    assert choose_method({"a": report(0.8, 0.1), "b": report(0.6, 0.9)})["method"] == "a"
    close = choose_method({"a": report(0.62, 0.1), "b": report(0.6, 0.9)})
    assert close["method"] == "b" and "median alpha" in close["reasons"]
