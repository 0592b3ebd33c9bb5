"""Small helpers every part may use (pydantic error wording, text tables, private files,
strict YAML: yamltext).

It imports nothing from ``edge`` but ``edge.errors``.
"""
