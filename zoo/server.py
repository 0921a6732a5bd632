"""Team tracking server (work in progress)."""


def main(args):
    raise SystemExit("zoo server: not built yet")
