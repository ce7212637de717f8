"""The Runtime: its vocabulary (``types``), its interface (``base``) and its in-process
implementation (``local``).  Import from those modules; this package imports nothing,
so that the engine and the store can use ``runtime.types`` without a cycle."""
