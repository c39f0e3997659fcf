"""The engine-neutral default: what the layers hold by definition, with no engine's rounding.

A full or latent layer holds ``seq_len`` tokens, a sliding layer ``min(seq_len, window)``,
a chunked layer ``min(seq_len, chunk)``, a fixed-state layer its state; no paging, padding
or allocator rounding. Every engine policy is measured against this baseline.
"""

from kvcalc.engines.base import Engine

ENGINE = Engine()
POLICY = ENGINE
