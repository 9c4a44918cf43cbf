"""``python -m tilde.server serve …``."""

from tilde.server.cli import main

if __name__ == "__main__":
    main()
