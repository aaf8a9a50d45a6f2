"""``ee-bench report``: the paper's analyses of finished runs, from results and samples only (no model).

Modules, one analysis each: :mod:`.runs` (reading a results folder), :mod:`.positions` (exit layer by
output position and length, paper Fig. 5), :mod:`.subword` (word-initial vs continuation pieces,
Fig. 11), :mod:`.pos` (part of speech, §6.1), :mod:`.confidence` (per-layer confidence from the logged
statistics, Fig. 4), :mod:`.translation` (WMT22 over pairs and per reference, Tables 2 and 7),
:mod:`.degenerate` (constant predictions), :mod:`.figures` (PNG, deterministic) and :mod:`.render`
(the markdown). Importing this package imports none of the heavy libraries.
"""
