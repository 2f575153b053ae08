"""Run the ``astro-assets`` CLI with the rename of one output file blocked, to be killed there.

Usage::

    python _fault_blocking_cli.py SIGNAL_FILE BLOCKED_NAME CLI_ARG...

When a file named ``BLOCKED_NAME`` is about to be renamed into place (the commit of an atomic
write: the content is complete in its temporary sibling), ``SIGNAL_FILE`` receives the
temporary path followed by a newline and the process sleeps until it is killed. Every other
rename goes through. The hook lives here, in the test suite, never in the product.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    signal_file, blocked_name, *cli_args = argv
    real_replace = os.replace

    def blocking_replace(src, dst, *args, **kwargs):
        if Path(dst).name == blocked_name:
            Path(signal_file).write_text(f"{src}\n")
            while True:
                time.sleep(60)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = blocking_replace
    from astro_assets.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
