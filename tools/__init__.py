"""Developer and operator tools that sit beside the services, not inside them.

Nothing under ``services/`` or ``shared/`` imports this package, and ``.dockerignore``
keeps it out of the service image. Importable from the repository root, as ``services``
is: ``python -m tools.threatsim.report``, pytest (rootdir on ``sys.path``) and the
benchmark scripts (which put the root on ``sys.path``).
"""
