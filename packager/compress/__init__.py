"""Optional compression before conversion: magnitude pruning, distillation into a smaller
student, and recipes that chain them with quantization and a gate.

It may import ``packager.sources``, ``packager.convert`` and ``packager.evaluate``; the
recipe runner also calls ``packager.bundle`` to seal its result.
"""
