"""Triton kernels of tritongru, one role per module: the persistent GRU forward of a layer or of a
whole stack (``gru_forward``) and its backward (``gru_backward``), each with its host launcher; the
launch configuration and the fit checks (``launch``), the GPU limits (``limits``), the tiles
(``tiles``), the grid barrier and the ready-flag exchange (``barrier``, ``exchange``), stall reports
(``stalls``) and the environment variables (``settings``).

Importing this package imports none of them, so that ``settings`` and ``stalls``, which need no
Triton, load where Triton is not installed.
"""
