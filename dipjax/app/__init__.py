"""A local web page that restores a photo: ``python -m dipjax.app`` (the ``app`` extra).

``dipjax.app.server.create_app(runs)`` is the Starlette application; each job it runs is a
command-line run folder under ``runs`` (``dipjax.app.jobs``).
"""
