"""The ``hatinspect`` command line: thin commands over the library."""
