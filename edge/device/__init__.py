"""Facts about the device the code runs on: the host (CPU, board, thermal zones, USB),
the device profiles in devices/ (contract 4), ``edge info`` and ``edge bench``.

It may import ``edge.runtime`` and ``edge.common``; never the daemon or the command line.
"""
