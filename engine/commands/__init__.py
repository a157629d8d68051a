"""One module per ``nuskybgd`` step; each defines ``register(subparsers)``.

A command sets ``func`` (called with the parsed namespace) through ``set_defaults``. Commands
parse arguments, call engine functions and write files; they contain no science.
"""
