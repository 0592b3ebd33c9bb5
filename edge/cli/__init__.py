"""The ``edge`` command line: argument parsing and the commands that wrap the parts.

It may import every other part of ``edge`` (it is the top of the device side); nothing in
``edge`` imports it except ``support``, which the packager's CLI shares for its error
handling.
"""
