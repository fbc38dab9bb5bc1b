"""What happens to one request, in order, whatever door it came through (library, stream, serve, batch, CLI).

- `plan`: everything decided before any work, decided once (`prepare`): route, licence policy, cost, the loop's
  take, the stems' separator and licence, the watermark's weights, the door's own refusals, job limits measured on
  the audio that will really be made.
- `steps`: the request fields soundforge handles itself, each step with its refusals and what it does to the
  generation (quality gate, loop, stems, watermark; output settings are applied when saving).
- `attempts`: one bookkeeping core for every provider call (cache, budget hold and settlement, callbacks, spans,
  provenance, failures) with thin sync, async and streaming loops around the I/O.
"""

from __future__ import annotations

from .plan import DOORS, Door, JobLimits, Plan, prepare, stems_source

__all__ = ["DOORS", "Door", "JobLimits", "Plan", "prepare", "stems_source"]
