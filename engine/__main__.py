"""``python -m engine`` and the ``dispatch`` command.

The command's modules are imported when it runs, not when this module is: a planning worker
process is spawned, and a spawned process first imports the script that started its parent
(for ``dispatch``, one that imports this module). Planning in it needs none of them.
"""

import sys


def main() -> int:
    from engine.cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
