"""``python -m tilde``: the ``tilde`` command line."""

from tilde.cli import main

if __name__ == "__main__":
    main(prog_name="tilde")
