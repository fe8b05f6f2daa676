"""``python -m toolkit`` is the ``toolkit`` command."""

from toolkit.cli import main

if __name__ == "__main__":  # not when a process of ``toolkit run``'s second lane imports it
    main()
