"""Intervals, sign tests and verdicts of the retrieval reports."""

from __future__ import annotations

import math

import pytest

from longrope.evaluate.stats import (
    Verdict,
    paired_wins,
    retrieval_verdict,
    sign_test_p,
    verdict,
    wilson_interval,
)


def test_wilson_interval_known_values_and_edges():
    lo, hi = wilson_interval(21, 40)  # 0.525 of 40 keys
    assert lo == pytest.approx(0.3750, abs=1e-4) and hi == pytest.approx(0.6707, abs=1e-4)
    lo, hi = wilson_interval(0, 40)
    assert lo == 0.0 and hi == pytest.approx(0.0876, abs=1e-4)
    lo, hi = wilson_interval(40, 40)
    assert hi == 1.0 and lo == pytest.approx(0.9124, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    # narrower with more keys at the same proportion
    assert wilson_interval(40, 80)[1] - wilson_interval(40, 80)[0] < wilson_interval(20, 40)[1] - wilson_interval(20, 40)[0]


def test_wilson_bounds_at_no_and_every_success_are_exact_for_any_count():
    """At 0 successes the lower bound is 0 and at n the upper one is 1, exactly: the formula's rounding left 2.2e-19
    for 0 of 1,000 keys in the records' ci95_low (battery 25c)."""
    for n in (1, 3, 7, 40, 999, 1000, 12345, 10**6):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
        assert wilson_interval(0.0, n)[0] == 0.0 and wilson_interval(float(n), n)[1] == 1.0


def test_sign_test_is_the_exact_two_sided_binomial():
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert sign_test_p(12, 3) == pytest.approx(2 * sum(math.comb(15, i) for i in range(4)) / 2**15)
    assert sign_test_p(3, 12) == sign_test_p(12, 3)
    assert sign_test_p(4, 4) == 1.0
    assert paired_wins([0.1, 0.5, 0.3], [0.2, 0.5, 0.1]) == (1, 1)
    with pytest.raises(ValueError):
        paired_wins([1.0], [1.0, 2.0])


@pytest.mark.parametrize(("ppl", "acc", "nll", "label"), [
    (0.9, 0.6, 0.2, Verdict.BOTH),
    (0.9, 0.6, 0.4, Verdict.PPL_ONLY),      # more keys answered, but a higher answer NLL: retrieval not kept
    (0.9, 0.4, 0.2, Verdict.PPL_ONLY),
    (1.1, 0.5, 0.3, Verdict.RETRIEVAL_ONLY),  # ties keep retrieval
    (1.0, 0.4, 0.4, Verdict.NEITHER),       # equal perplexity is not better
])
def test_verdict_against_a_reference(ppl, acc, nll, label):
    assert verdict(ppl, 1.0, acc, 0.5, nll, 0.3) == label


def test_verdict_without_answer_nll_uses_accuracy_alone():
    assert verdict(0.8, 1.0, 0.5, 0.5) == Verdict.BOTH
    assert verdict(0.8, 1.0, 0.5, 0.5, float("nan"), 0.3) == Verdict.BOTH
    assert verdict(float("nan"), 1.0, 0.5, 0.5) == Verdict.RETRIEVAL_ONLY
    assert retrieval_verdict(0.6, 0.5, reference="yarn") == "retrieval at least as good as yarn"
    assert retrieval_verdict(0.4, 0.5, 0.1, 0.2, reference="yarn").startswith("retrieval mixed against yarn")
    assert retrieval_verdict(0.4, 0.5, 0.3, 0.2, reference="yarn") == "retrieval worse than yarn"


def test_paired_test_only_on_the_same_keys():
    from longrope.evaluate.stats import paired_test

    assert paired_test([0.1, 0.2, 0.9], [0.3, 0.3, 0.3]) == {"nll_wins": 2, "nll_losses": 1, "nll_ties": 0,
                                                              "sign_p": sign_test_p(2, 1)}
    assert paired_test([], [0.3]) == {} and paired_test([0.1], [0.3, 0.3]) == {}


def test_the_words_for_a_paired_test_say_which_keys_tied():
    """Every key tied read "lower answer NLL on 0 of 0 keys, sign test p 1" (battery 25c's open item); the demo
    and eval passkey said it in two wordings, each its own."""
    from longrope.evaluate.stats import paired_test, paired_test_text

    assert paired_test_text(paired_test([0.3, 0.3], [0.3, 0.3])) == "answer NLL tied on all 2 keys compared: no sign test"
    nan = float("nan")  # overflowed scores (float16) are not ties (the review of battery 25)
    assert paired_test_text(paired_test([nan, nan], [nan, nan])) == "no answer NLL to compare"
    said = paired_test_text(paired_test([0.1, 0.3, 0.9], [0.3, 0.3, 0.3]))
    assert said == f"lower answer NLL on 1 of 2 keys that differ (1 tied), sign test p {sign_test_p(1, 1):.2g}"
    assert paired_test_text({}) == ""


def test_stats_refuse_counts_that_are_no_counts_and_test_many_keys():
    """wilson_interval and sign_test_p check their counts in one line: n=-3 came back as the (nan, nan) of an empty
    sample and n=True as a sample of one, a text z or a float count was a TypeError, a mismatched pair a plain
    ValueError; and the sign test of more than 1,023 keys overflowed 2.0**n (battery 21b)."""
    import pytest

    from longrope.errors import UserError
    from longrope.evaluate.stats import paired_wins, sign_test_p, wilson_interval

    for call in (lambda: wilson_interval(1, -3), lambda: wilson_interval(1, True), lambda: wilson_interval(1, 4.0),
                 lambda: wilson_interval(1, 4, z="1.96"), lambda: wilson_interval(1, 4, z=float("nan")),
                 lambda: wilson_interval(float("nan"), 4), lambda: sign_test_p(2.0, 1), lambda: sign_test_p(-1, 3),
                 lambda: paired_wins([1.0], [1.0, 2.0]), lambda: paired_wins(1.0, [1.0])):
        with pytest.raises(UserError):
            call()
    assert wilson_interval(0, 0) != wilson_interval(0, 0)  # (nan, nan): nothing measured, as documented
    assert sign_test_p(600, 600) == 1.0 and sign_test_p(0, 1500) < 1e-300
    assert abs(sign_test_p(530, 470) - 0.0620) < 1e-3  # exact: 0.06202
    assert 0.007 < sign_test_p(1060, 940) < 0.0085  # exact: 0.00793


def test_the_lowest_of_compared_values_is_the_lowest_finite_one_whatever_their_order():
    from longrope.evaluate.stats import lowest

    nan = float("nan")
    assert lowest({"a": nan, "b": 3.0, "c": 2.0}) == "c"
    assert lowest({"a": float("inf"), "b": 5.0}) == "b"
    assert lowest({"a": 1.0, "b": 0.5, "c": 0.1}, ["a", "b"]) == "b"
    assert lowest({"a": nan, "b": None}) is None
    import numpy as np

    # the review of battery 27b: numpy floats (a perplexity taken from a tensor) counted as not finite
    assert lowest({"a": np.float32(2.0), "b": 3.0}) == "a" and lowest({"a": np.float64(nan)}) is None
    assert lowest({"a": 10**400, "b": 1.0}) == "b"  # past a float's range: not finite, no OverflowError


def test_verdicts_on_numpy_numbers_are_those_on_python_numbers():
    """The second review of battery 27: with numpy inputs the answer-NLL comparison was np.False_, which `is not
    False`, so a worse answer NLL counted as retrieval kept ("better on perplexity and retrieval")."""
    import numpy as np

    from longrope.evaluate.stats import Verdict, verdict

    assert verdict(5, 6, 1, 1, answer_nll=np.float32(2.0), ref_answer_nll=1.0) == Verdict.PPL_ONLY
    assert verdict(5, 6, 1, 1, answer_nll=2.0, ref_answer_nll=1.0) == Verdict.PPL_ONLY
