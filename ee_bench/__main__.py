"""``python -m ee_bench`` (also used by ``accelerate launch -m ee_bench``)."""

from ee_bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
