"""``python -m dptrain`` runs the same Hydra app as the ``dptrain`` command."""

from dptrain.cli.main import main

if __name__ == "__main__":
    main()
