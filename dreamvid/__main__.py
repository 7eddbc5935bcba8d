"""`dreamvid` and `python -m dreamvid`: the command line, with a Ctrl-C while it starts (importing torch
takes seconds) ending as quietly as one during a render."""
import sys


def main() -> None:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("dreamvid: interrupted", file=sys.stderr)
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
