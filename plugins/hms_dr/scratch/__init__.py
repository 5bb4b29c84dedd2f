"""Scratch: the disposable places restore work happens in, made and removed by one package.

``database``: scratch databases on the isolated restore server (the restore test's, a DR
restore's source), named so that a drop can tell them from anything else, and never production.
``cluster``: scratch clusters recovered on this worker (the physical drill's, a DR restore's
point-in-time source), stopped and removed only below a scratch-cluster folder.
``workdir``: the one function that chooses a restore command's work folder under staging.
"""
