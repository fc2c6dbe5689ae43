"""The identifiability battery: pure tensor maths, no I/O, no model loading.

Brunner et al., "On Identifiability in Transformers", ICLR 2020 (arXiv 1908.04211).
Symbol names follow ``docs/metrics.md``: ``E``, ``V_h``, ``W_O^h``, ``T_h = V_h W_O^h``, ``A_h``.
"""
