"""Small statistics for reporting retrieval: intervals for proportions, paired sign tests, and the
verdict of one factor set against a reference on perplexity and retrieval. Pure Python.

Why these: a passkey accuracy is a proportion of a few dozen keys, so two sets that answer 0.53
and 0.70 of 40 keys may not differ at all; the Wilson interval says how wide the uncertainty
is (it stays inside [0, 1] and behaves at 0 and 1, unlike the normal approximation). The mean
teacher-forced answer NLL is continuous, so it separates sets that answer the same keys; a
paired sign test on it (key by key, the same keys for both sets) says whether one set is
lower on more keys than chance would give.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from longrope.errors import UserError, shown
from longrope.options import MAX_COUNT, check_sequence, int_problem, is_integer, is_number

__all__ = ["perplexity", "lowest", "wilson_interval", "sign_test_p", "paired_wins", "paired_test", "paired_test_text", "Verdict", "verdict", "retrieval_verdict"]

#: z of a two-sided 95 % interval
Z95 = 1.959963984540054

#: the most keys the sign test sums exactly; above, its normal approximation
EXACT_SIGN_TEST = 1000


def perplexity(mean_nll: float) -> float:
    """``exp(mean NLL)``, the one conversion of a loss to a perplexity: inf past a float's range (a model that overflows
    in float16 scored a finite mean NLL over 709, and math.exp's OverflowError ended eval ppl with a traceback after
    every measurement, battery 25c), NaN for NaN."""
    return math.exp(mean_nll) if mean_nll < 709.0 else (math.inf if mean_nll == mean_nll else math.nan)


def lowest(values: Mapping[str, float], names: Sequence[str] | None = None) -> str | None:
    """The name (of ``names``, default every key of ``values``) whose value is the lowest finite number: the best of
    perplexities compared, where a NaN (an overflowed float16 run) is never the best. None when no value is finite.
    ``min(values, key=values.get)`` took a NaN listed first as the lowest (NaN compares false both ways), and a
    search's held-out report named that overflowed baseline the best, its ratio NaN (battery 27b)."""
    names = list(values) if names is None else list(names)
    finite = [n for n in names if _finite(values.get(n))]
    return min(finite, key=lambda n: values[n]) if finite else None


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (95 % by default); (nan, nan) for n = 0 (nothing
    measured: the tables print null). ``successes`` may be fractional (a sum of per-sample scores in [0, 1], as
    RULER's). A count that is no count, a NaN or a ``z`` that is not a finite number > 0 is a one-line
    :class:`UserError`: n=-3 came back as (nan, nan) like an empty sample, n=True as a sample of one, a text z
    as a TypeError (battery 21b)."""
    if not is_integer(n) or n < 0:
        raise UserError(f"n must be a number of samples (an integer >= 0), got {shown(n)}")
    if not is_number(z) or not 0 < z < math.inf:
        raise UserError(f"z must be a finite number > 0, got {shown(z)}")
    if n == 0:
        return float("nan"), float("nan")
    if not is_number(successes) or not 0 <= successes <= n:
        raise UserError(f"successes must lie in [0, {n}], got {shown(successes)}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0 (or n) successes the bound is 0 (or 1) exactly; the formula's rounding gave 2.2e-19 for 0 of 1,000 keys in
    # the records (battery 25c)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if wins and losses were
    equally likely (ties are left out by the caller). 1.0 when there is nothing to test."""
    for value, name in ((wins, "wins"), (losses, "losses")):
        if int_problem(value, 0, MAX_COUNT):  # 2.0 was range()'s TypeError, -1 math.comb's ValueError
            raise UserError(f"{name} must be a count (an integer in [0, {MAX_COUNT:,}]), got {shown(value)}")
    n = wins + losses
    if n == 0:
        return 1.0
    if n > EXACT_SIGN_TEST:  # the normal approximation with continuity correction (exact to ~3 digits here): the
        # exact sum overflowed 2.0**n past 1,023 keys and takes minutes of big-integer arithmetic past a million
        return min(1.0, math.erfc(max(abs(wins - losses) - 1, 0) / math.sqrt(2 * n)))
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


class Verdict:
    """How a factor set compares with a reference set on perplexity and on retrieval.

    Perplexity is better when strictly lower. Retrieval is *kept* when greedy accuracy is at least
    the reference's and the mean teacher-forced answer NLL is at most the reference's (both, when
    both are known; accuracy alone otherwise). The labels are what the tables print.
    """

    BOTH = "better on perplexity and retrieval"
    PPL_ONLY = "better on perplexity only"
    RETRIEVAL_ONLY = "better on retrieval only"
    NEITHER = "better on neither"


def verdict(ppl: float, ref_ppl: float, accuracy: float, ref_accuracy: float,
            answer_nll: float | None = None, ref_answer_nll: float | None = None) -> str:
    """The :class:`Verdict` label of a set against a reference (see there for the rule)."""
    better_ppl = bool(_finite(ppl) and _finite(ref_ppl) and ppl < ref_ppl)  # numpy bools are not False
    acc_ok, nll_ok = _retrieval(accuracy, ref_accuracy, answer_nll, ref_answer_nll)
    kept = acc_ok and nll_ok is not False
    if better_ppl and kept:
        return Verdict.BOTH
    if better_ppl:
        return Verdict.PPL_ONLY
    if kept:
        return Verdict.RETRIEVAL_ONLY
    return Verdict.NEITHER


def retrieval_verdict(accuracy: float, ref_accuracy: float, answer_nll: float | None = None,
                      ref_answer_nll: float | None = None, *, reference: str = "the reference") -> str:
    """Retrieval alone against a reference (no perplexity measured): kept when greedy accuracy is at least the
    reference's and (when both are known) the mean answer NLL at most the reference's."""
    acc_ok, nll_ok = _retrieval(accuracy, ref_accuracy, answer_nll, ref_answer_nll)
    if nll_ok is None:
        return f"retrieval at least as good as {reference}" if acc_ok else f"retrieval worse than {reference}"
    if acc_ok and nll_ok:
        return f"retrieval at least as good as {reference}"
    if not acc_ok and not nll_ok:
        return f"retrieval worse than {reference}"
    return (f"retrieval mixed against {reference} (accuracy {'higher or equal' if acc_ok else 'lower'}, answer NLL "
            f"{'lower or equal' if nll_ok else 'higher'})")


def _retrieval(accuracy: float, ref_accuracy: float, answer_nll: float | None,
               ref_answer_nll: float | None) -> tuple[bool, bool | None]:
    """The one retrieval rule: (accuracy at least the reference's, answer NLL at most the reference's — None
    when either NLL is unknown)."""
    acc_ok = bool(_finite(accuracy) and _finite(ref_accuracy) and accuracy >= ref_accuracy)
    if not (_finite(answer_nll) and _finite(ref_answer_nll)):
        return acc_ok, None
    return acc_ok, bool(answer_nll <= ref_answer_nll)  # np.False_ is not False: a worse NLL counted as kept


def paired_test(nlls: Sequence[float], ref_nlls: Sequence[float]) -> dict:
    """Key by key against a reference on the same keys: ``nll_wins`` (lower answer NLL), ``nll_losses`` and the
    exact sign test's ``sign_p``; empty when the two lists are not paired (missing or of other lengths)."""
    if not _listed(nlls) or not _listed(ref_nlls) or len(nlls) != len(ref_nlls):
        return {}
    wins, losses = paired_wins(nlls, ref_nlls)
    # ties are equal finite pairs: a NaN (an overflowed float16 score) neither wins, loses nor ties
    ties = sum(1 for x, y in zip(nlls, ref_nlls) if x == y and math.isfinite(x))
    return {"nll_wins": wins, "nll_losses": losses, "nll_ties": ties, "sign_p": sign_test_p(wins, losses)}


def paired_test_text(test: dict) -> str:
    """The words for a :func:`paired_test` (``""`` when there is none), one sentence for every report: keys that
    tied are said to (every key tied read "lower answer NLL on 0 of 0 keys, sign test p 1")."""
    if "nll_wins" not in test:
        return ""
    wins, losses, ties = test["nll_wins"], test["nll_losses"], test.get("nll_ties")
    if wins + losses == 0:
        return f"answer NLL tied on all {ties} keys compared: no sign test" if ties else "no answer NLL to compare"
    tied = f" ({ties} tied)" if ties else ""
    return f"lower answer NLL on {wins} of {wins + losses} keys that differ{tied}, sign test p {test['sign_p']:.2g}"


def paired_wins(a: Sequence[float], b: Sequence[float]) -> tuple[int, int]:
    """``(keys where a < b, keys where a > b)`` of two paired score lists (lower is better)."""
    check_sequence(a, "a", "[nll]")
    check_sequence(b, "b", "[nll]")
    if len(a) != len(b):
        raise UserError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    wins = sum(1 for x, y in zip(a, b) if x < y)
    losses = sum(1 for x, y in zip(a, b) if x > y)
    return wins, losses


def _listed(x: object) -> bool:
    """Whether ``x`` is a non-empty list of scores (a number alone was "object of type 'float' has no len()")."""
    return hasattr(x, "__len__") and not isinstance(x, (str, bytes)) and len(x) > 0  # type: ignore[arg-type]


def _finite(x: float | None) -> bool:
    from longrope.options import is_finite_number  # the one finiteness test (numpy floats, 10**400)

    return is_finite_number(x)
