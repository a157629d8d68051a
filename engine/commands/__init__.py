"""One module per ``nuskybgd`` step; each defines ``register(subparsers)``.

A command sets ``func`` (called with the parsed namespace) through ``set_defaults``. Commands
parse arguments, call engine functions and write files; they contain no science.
The CLI imports every step's module to build its parser, so a step imports the engine inside its
``run`` (lazy: ``nuskybgd --help`` and argument errors load no science; see tests/engine/test_layering.py).
"""
