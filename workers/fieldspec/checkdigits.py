"""Check-digit algorithms used to validate and repair key fields.

Every algorithm has the same interface (:class:`CheckDigitAlgorithm`):

``validate(text) -> bool``
    True when ``text`` (payload followed by its check character(s)) is valid.
    Strict: characters outside the algorithm's alphabet make it invalid; callers
    normalise first (strip spaces, upper-case, ...).
``compute(payload) -> str``
    The check character(s) to append to ``payload``. Raises ``ValueError`` for
    a payload with characters outside the alphabet.

Each algorithm is also a small deterministic automaton (``start``/``feed``/
``accepts``): feeding the characters of a candidate one at a time and asking
``accepts`` at the end is equivalent to ``validate``. The format-constrained
corrector (``correction.py``) runs a Viterbi search over these states, which
makes "most probable string that passes the check digit" exact and cheap.
State spaces are tiny (at most a few hundred states).

Algorithms (registry :data:`CHECK_DIGITS`):

- ``luhn``: Luhn mod 10 (IMEI, payment cards).
- ``gs1``: GS1 mod 10, weights 3,1 from the right (GTIN-8/12/13/14, SSCC-18, GLN).
- ``iso7064_11_2``: ISO/IEC 7064 MOD 11-2, pure system, digits, check ``0-9`` or ``X``
  (ISNI, ORCID).
- ``iso7064_11_10``: ISO/IEC 7064 MOD 11,10, hybrid system, digits.
- ``iso7064_37_2``: ISO/IEC 7064 MOD 37-2, pure system, alphanumeric ``0-9A-Z``,
  check character from ``0-9A-Z*``.
- ``iso7064_97_10``: ISO/IEC 7064 MOD 97-10, pure system, two check digits.
  Letters in the payload are expanded to two digits (A=10 ... Z=35) as in
  IBAN, so alphanumeric payloads are accepted. ``compute`` returns the pair in
  ``00..96``; the IBAN-style aliases ``97``/``98`` (same value mod 97) also validate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable

DIGITS = "0123456789"
ALNUM = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

__all__ = [
    "CHECK_DIGITS",
    "CheckDigitAlgorithm",
    "GS1Mod10",
    "Iso7064Hybrid1110",
    "Iso7064Pure",
    "Luhn",
    "get_algorithm",
]


class CheckDigitAlgorithm(ABC):
    """Uniform interface of a check-digit algorithm (see module docstring).

    Attributes:
        name: registry key.
        payload_alphabet: characters allowed before the check character(s).
        check_alphabet: characters a check character can take.
        check_length: number of trailing check characters.
    """

    name: str
    payload_alphabet: str
    check_alphabet: str
    check_length: int = 1

    # -- automaton interface ---------------------------------------------------
    @abstractmethod
    def start(self) -> Hashable:
        """Initial automaton state (before any character)."""

    @abstractmethod
    def feed(self, state: Hashable, ch: str) -> Hashable | None:
        """State after reading ``ch``; ``None`` when ``ch`` is not allowed at all."""

    @abstractmethod
    def accepts(self, state: Hashable) -> bool:
        """True when the string read so far is a valid payload + check."""

    # -- convenience -------------------------------------------------------------
    @abstractmethod
    def compute(self, payload: str) -> str:
        """Check character(s) for ``payload``; ``ValueError`` on bad characters."""

    def validate(self, text: str) -> bool:
        """True when ``text`` ends with the correct check character(s)."""
        if not isinstance(text, str) or len(text) <= self.check_length:
            return False
        state = self.start()
        for ch in text:
            state = self.feed(state, ch)
            if state is None:
                return False
        return self.accepts(state)

    def append(self, payload: str) -> str:
        """``payload`` followed by its check character(s)."""
        return payload + self.compute(payload)

    def _check_payload(self, payload: str) -> None:
        if not payload:
            raise ValueError(f"{self.name}: empty payload")
        bad = sorted({c for c in payload if c not in self.payload_alphabet})
        if bad:
            raise ValueError(f"{self.name}: characters not allowed in payload: {''.join(bad)!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class _WeightedMod10(CheckDigitAlgorithm):
    """Shared machinery for Luhn and GS1: mod 10 over digits whose weight
    alternates by position counted from the *right*.

    Because the total length is unknown while streaming, the automaton keeps
    the sum for both parities: state = (length parity, sum_if_even_idx_weighted,
    sum_if_odd_idx_weighted), all mod 10 (200 states).
    """

    payload_alphabet = DIGITS
    check_alphabet = DIGITS

    @abstractmethod
    def _heavy(self, d: int) -> int:
        """Contribution of digit ``d`` at a weighted position."""

    def start(self) -> Hashable:
        return (0, 0, 0)

    def feed(self, state: Hashable, ch: str) -> Hashable | None:
        if ch not in DIGITS or len(ch) != 1:
            return None
        parity, s_even, s_odd = state  # type: ignore[misc]
        d = ord(ch) - 48
        if parity == 0:  # this char has an even index
            s_even = (s_even + self._heavy(d)) % 10
            s_odd = (s_odd + d) % 10
        else:
            s_even = (s_even + d) % 10
            s_odd = (s_odd + self._heavy(d)) % 10
        return (parity ^ 1, s_even, s_odd)

    def accepts(self, state: Hashable) -> bool:
        parity, s_even, s_odd = state  # type: ignore[misc]
        # Length n; the rightmost char (index n-1) is the check digit with weight 1,
        # so the weighted indexes are those with index % 2 == n % 2.
        total = s_even if parity == 0 else s_odd
        return total == 0

    def compute(self, payload: str) -> str:
        self._check_payload(payload)
        total = 0
        # Rightmost payload digit is weighted (the check digit will be to its right).
        for i, ch in enumerate(reversed(payload)):
            d = ord(ch) - 48
            total += self._heavy(d) if i % 2 == 0 else d
        return str((10 - total % 10) % 10)


class Luhn(_WeightedMod10):
    """Luhn mod 10 (IMEI, ISO/IEC 7812 card numbers)."""

    name = "luhn"

    def _heavy(self, d: int) -> int:
        d2 = 2 * d
        return d2 - 9 if d2 > 9 else d2


class GS1Mod10(_WeightedMod10):
    """GS1 mod 10: weights 3,1,3,... from the right of the payload
    (GTIN-8/12/13/14, SSCC-18, GLN)."""

    name = "gs1"

    def _heavy(self, d: int) -> int:
        return 3 * d


class Iso7064Pure(CheckDigitAlgorithm):
    """ISO/IEC 7064 pure system: ``sum(v_i * r^(n-i)) mod M == 1`` over all
    characters including the check character(s). The automaton state is the
    Horner remainder plus bookkeeping that keeps check-only characters (``X`` in
    MOD 11-2, ``*`` in MOD 37-2) in the check position.

    Args:
        name: registry key.
        modulus: M.
        radix: r.
        payload_alphabet: allowed payload characters.
        check_alphabet: character for each check value (index = value).
        check_length: 1, or 2 for MOD 97-10 (two decimal digits).
        letters_as_two_digits: expand letters to 10..35 as two decimal digits
            (IBAN style), used with MOD 97-10.
    """

    def __init__(
        self,
        name: str,
        modulus: int,
        radix: int,
        payload_alphabet: str,
        check_alphabet: str,
        check_length: int = 1,
        letters_as_two_digits: bool = False,
    ) -> None:
        self.name = name
        self.modulus = modulus
        self.radix = radix
        self.payload_alphabet = payload_alphabet
        self.check_alphabet = check_alphabet
        self.check_length = check_length
        self.letters_as_two_digits = letters_as_two_digits
        self._values = {c: i for i, c in enumerate(ALNUM)}
        if check_length == 1:
            self._values.update({c: i for i, c in enumerate(check_alphabet)})

    def start(self) -> Hashable:
        # (Horner remainder, trailing chars usable as check chars (capped), locked)
        # "locked" = a check-only char (e.g. X in MOD 11-2) was read: it must be last.
        return (0, 0, False)

    def feed(self, state: Hashable, ch: str) -> Hashable | None:
        p, trailing, locked = state  # type: ignore[misc]
        if locked or len(ch) != 1:
            return None
        in_payload = ch in self.payload_alphabet
        in_check = ch in self.check_alphabet
        if not (in_payload or in_check):
            return None
        v = self._values[ch]
        if self.letters_as_two_digits and v >= 10:
            p = (p * 100 + v) % self.modulus
        else:
            p = (p * self.radix + v) % self.modulus
        trailing = min(trailing + 1, self.check_length) if in_check else 0
        return (p, trailing, not in_payload)

    def accepts(self, state: Hashable) -> bool:
        p, trailing, _ = state  # type: ignore[misc]
        return p == 1 and trailing >= self.check_length

    def compute(self, payload: str) -> str:
        self._check_payload(payload)
        state = self.start()
        for ch in payload:
            state = self.feed(state, ch)
        p = state[0]  # type: ignore[index]
        # Need (p * r^k + c) mod M == 1, with c the numeric value of the check part.
        shift = self.radix**self.check_length
        c = (1 - p * shift) % self.modulus
        if self.check_length == 1:
            return self.check_alphabet[c]
        return str(c).zfill(self.check_length)


class Iso7064Hybrid1110(CheckDigitAlgorithm):
    """ISO/IEC 7064 MOD 11,10 hybrid system over digits.

    p_0 = 10; for each digit: s = (p + d) mod 10, s = 10 if s == 0; p = 2s mod 11.
    A string (payload + check) is valid when the last step gives s == 1.
    State = (p, last s) so that ``accepts`` can test the last step.
    """

    name = "iso7064_11_10"
    payload_alphabet = DIGITS
    check_alphabet = DIGITS

    def start(self) -> Hashable:
        return (10, None)

    def feed(self, state: Hashable, ch: str) -> Hashable | None:
        if len(ch) != 1 or ch not in DIGITS:
            return None
        p, _ = state  # type: ignore[misc]
        s = (p + ord(ch) - 48) % 10 or 10
        return ((2 * s) % 11, s)

    def accepts(self, state: Hashable) -> bool:
        return state[1] == 1  # type: ignore[index]

    def compute(self, payload: str) -> str:
        self._check_payload(payload)
        state = self.start()
        for ch in payload:
            state = self.feed(state, ch)
        p = state[0]  # type: ignore[index]
        return str((11 - p) % 10)


CHECK_DIGITS: dict[str, CheckDigitAlgorithm] = {
    "luhn": Luhn(),
    "gs1": GS1Mod10(),
    "iso7064_11_2": Iso7064Pure("iso7064_11_2", 11, 2, DIGITS, DIGITS + "X"),
    "iso7064_11_10": Iso7064Hybrid1110(),
    "iso7064_37_2": Iso7064Pure("iso7064_37_2", 37, 2, ALNUM, ALNUM + "*"),
    "iso7064_97_10": Iso7064Pure(
        "iso7064_97_10", 97, 10, ALNUM, DIGITS, check_length=2, letters_as_two_digits=True
    ),
}
"""Registry of check-digit algorithms by the name used in field schemas."""


def get_algorithm(name: str) -> CheckDigitAlgorithm:
    """Registry lookup; ``KeyError`` with the known names when ``name`` is unknown."""
    try:
        return CHECK_DIGITS[name]
    except KeyError:
        raise KeyError(f"unknown check digit {name!r}; known: {sorted(CHECK_DIGITS)}") from None
