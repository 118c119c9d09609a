"""The ``visor`` command line: thin commands over the library. The entry point is
:func:`visor.cli.main.main`; this package imports nothing itself, so that importing one command's
module (``visor.cli.common``, say) does not import every command."""
