"""zoo compare (work in progress)."""


def main(args):
    raise SystemExit("zoo compare: not built yet")
