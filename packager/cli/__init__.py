"""The ``packager`` command line. ``main`` builds the parser; each command module
(``bundle``, ``compress``, ``deploy``) adds its commands through ``register`` and imports
its shared helpers from ``common``, never from ``main``.

It may import every packager stage.
"""
