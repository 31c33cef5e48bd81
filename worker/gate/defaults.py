"""The default bounds of `worker.gate.limits.JobLimits`, in bytes; importing them costs no rq import.

`rq_signals.defaults` (read by the Django settings layer and the health probe) takes its defaults
from here.
"""

from __future__ import annotations

from typing import Final

#: Largest job data a worker decompresses, in bytes: twice rq_signals' largest payload (1 MiB of JSON, see
#: RQ_SIGNALS["MAX_PAYLOAD_BYTES"]), so a payload a send accepts always loads, with its envelope.
DEFAULT_MAX_DATA_BYTES: Final = 2 * 1024 * 1024
#: Largest job meta a worker decodes, in bytes as stored (our attempt records stay far below it).
DEFAULT_MAX_META_BYTES: Final = 256 * 1024
#: Largest failure text (``exc_info``) decompressed, in bytes; a longer one is shown as a note.
DEFAULT_MAX_EXC_INFO_BYTES: Final = 1024 * 1024
