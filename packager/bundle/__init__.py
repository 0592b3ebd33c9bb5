"""The build pipeline (convert -> evaluate -> gate) and the writer that seals its result
into a signed, reproducible bundle (contract 1).

It may import every stage below it (sources, convert, evaluate) and ``edge.bundle``.
"""
