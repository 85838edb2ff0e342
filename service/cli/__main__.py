"""``python -m service.cli`` runs the ``rehearsal`` command."""

from service.cli import main

main()
