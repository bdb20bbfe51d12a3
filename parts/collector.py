"""How each script imports httpx: with Python's cyclic collector paused, then what the import made
frozen (README, "Decisions": the collector).

The source of the shared part "collector" (see workbench/shared_parts.py).
"""

import gc

# ---- shared part "collector": the same in every script of scripts/kustomer ----
# A job is a fresh process: it imports httpx, sends a request or two and exits. Python's cyclic
# collector would walk every object those imports make (tens of thousands, nearly all alive until
# the job ends) while they are made and again at exit, about a fifth of a cold job (README,
# "Decisions"). So it is off while httpx is imported, and what the imports made is frozen: gc.freeze
# moves it out of every later collection, as its documentation suggests for long-lived objects.
# What a job makes afterwards is collected as usual.
_collecting = gc.isenabled()
gc.disable()
import httpx  # noqa: E402  # after gc.disable(), above

gc.freeze()
if _collecting:
    gc.enable()
# ---- end of shared part "collector" ----
