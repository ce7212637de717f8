"""JSON helpers every wire format needs."""

from __future__ import annotations

import math

#: the floor OpenAI's API uses for a token the model gives no chance (-inf in nats)
LOGPROB_FLOOR = -9999.0


def finite_logprob(value: float) -> float | None:
    """A log-probability (nats) fit for JSON, which has no nan or -inf: nan (no value,
    as for a prompt's first token) becomes null and -inf becomes -9999, OpenAI's floor."""
    if math.isnan(value):
        return None
    return max(value, LOGPROB_FLOOR)


def read_logprob(value: float | None) -> float:
    """The inverse of ``finite_logprob`` for a client: null is nan again and the floor
    (-9999 or below) is -inf again."""
    if value is None:
        return math.nan
    return -math.inf if value <= LOGPROB_FLOOR else float(value)
