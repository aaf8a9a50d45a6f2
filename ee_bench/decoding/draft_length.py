"""How many tokens a self-speculative round drafts (``--draft-len N``, ``adaptive[:N]``, either ``+gate``).

- ``N`` (constant): every round drafts N tokens (fewer where the token budget ends first).
- ``adaptive:N`` (``adaptive`` = ``adaptive:4``): the first round of each row drafts N; after a round
  whose drafts were all accepted the next drafts 2 more, after a round with a rejection 1 fewer, never
  fewer than 1. This is transformers' ``num_assistant_tokens_schedule="heuristic_transient"``
  (``AssistedCandidateGenerator.update_candidate_strategy``: ``+= 2`` when every candidate matched,
  else ``max(1, n − 1)``), reset for every row as the ``_transient`` variant is for every call.
- ``+gate`` (``4+gate``, ``adaptive+gate``, ``adaptive:6+gate``): the run's gate may also **end a round
  early**: after each draft token the gate is asked at the draft's layer (at no extra blocks), and the
  round stops after a draft it does not fire on, the draft predicted to be rejected. That draft is
  still verified. This is transformers' ``assistant_confidence_threshold`` (``ConfidenceCriteria``: the
  assistant stops when its probability of the token it drafted is below the threshold), with any
  ee-bench gate in place of the probability, e.g. CALM's learned exit classifier (``--gate classifier``)
  or the draft's own confidence, which its head has already computed. The adaptive length then follows
  transformers: +2 when every draft of the round was accepted (however many were drafted), else −1,
  both from the round's planned length.

The length only changes how many drafts are verified together; every emitted token is still the full
model's greedy token (lossless either way). With acceptance as low as SmolLM2's early layers give
(6–8 % at layers 11 and 17, ``leaderboard/peers``), an adaptive draft settles at one token per round, so
a round costs one full-depth pass plus one extra head, instead of drafting 4 tokens of which 3 are
thrown away.

Shape notation: none (integers only).
"""

from __future__ import annotations

from dataclasses import dataclass

from ee_bench.errors import DecodingOptionError

ADAPTIVE_START = 4
"""First draft length of ``--draft-len adaptive`` (the constant default of ``--kv speculative``)."""

GROW, SHRINK, MINIMUM = 2, 1, 1
"""transformers' heuristic: +2 after a fully accepted round, −1 after a rejection, at least 1."""


@dataclass(frozen=True)
class DraftLength:
    """A draft-length schedule.

    Attributes:
        start: drafts in a row's first round (≥ 1).
        adaptive: False = every round drafts ``start``; True = transformers' heuristic (module docstring).
        gate_stop: the run's gate may end a round after a draft it does not fire on (``+gate``).
    """

    start: int
    adaptive: bool = False
    gate_stop: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.start, bool) or int(self.start) != self.start or self.start < 1:
            raise DecodingOptionError(f"--draft-len {self.start} is invalid: a round drafts a whole number >= 1 "
                                      f"of tokens; try --draft-len 4 or --draft-len adaptive.")

    def next(self, drafted: int, accepted: int, planned: int | None = None) -> int:
        """The next round's draft length after a round that planned ``planned`` drafts (default:
        ``drafted``), drafted ``drafted`` of them (fewer when the gate ended it early) and accepted
        ``accepted`` (0 … drafted).

        Raises:
            ValueError: if ``accepted`` is outside 0 … ``drafted``, or ``drafted`` outside 1 … ``planned``.
        """
        planned = drafted if planned is None else planned
        if not 0 <= accepted <= drafted or not 1 <= drafted <= planned:
            raise ValueError(f"accepted {accepted} drafts of {drafted} (planned {planned})")
        if not self.adaptive:
            return self.start
        return planned + GROW if accepted == drafted else max(MINIMUM, planned - SHRINK)

    def __str__(self) -> str:
        """``"4"``, ``"adaptive:4"``, ``"adaptive:4+gate"`` (the ``--draft-len`` spelling, also written to results)."""
        return (f"adaptive:{self.start}" if self.adaptive else str(self.start)) + ("+gate" if self.gate_stop else "")


def parse_draft_len(value) -> int | DraftLength | None:
    """``--draft-len``: None, a whole number N ≥ 1 (returned as int), ``adaptive`` or ``adaptive:N``
    (returned as :class:`DraftLength`); a :class:`DraftLength` passes through.

    Raises:
        DecodingOptionError: for anything else (the message names the accepted forms).
    """
    if value is None or isinstance(value, DraftLength):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return DraftLength(value).start
    text = str(value).strip().lower()
    base, plus, suffix = text.partition("+")
    gate_stop = bool(plus) and suffix == "gate"
    kind, _, n = base.partition(":")
    if (not plus or gate_stop) and base.isdigit() and int(base) >= 1:
        return DraftLength(int(base), gate_stop=True) if gate_stop else int(base)
    if (not plus or gate_stop) and kind == "adaptive" and (not n or (n.isdigit() and int(n) >= 1)):
        return DraftLength(int(n) if n else ADAPTIVE_START, adaptive=True, gate_stop=gate_stop)
    raise DecodingOptionError(f"--draft-len {value!r} is invalid: give a whole number >= 1 of tokens per round "
                              f"(e.g. --draft-len 4), or adaptive / adaptive:N (start at N, +2 after a fully "
                              f"accepted round, -1 after a rejection, at least 1); add +gate to let the run's "
                              f"gate end a round early (e.g. adaptive+gate).")


def draft_len_arg(text: str) -> int | str:
    """argparse ``type`` of ``--draft-len``: digits become an int (so results record ``2``, not ``"2"``),
    anything else stays text for :func:`parse_draft_len` to check before the model loads."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def as_schedule(draft_len: int | DraftLength) -> DraftLength:
    """A :class:`DraftLength` from a parsed ``--draft-len`` (an int is a constant schedule)."""
    return draft_len if isinstance(draft_len, DraftLength) else DraftLength(int(draft_len))
