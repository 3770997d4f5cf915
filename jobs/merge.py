"""Ray job entrypoint for one merge: the same path as `raysweep merge`.

    ray job submit --working-dir . -- python jobs/merge.py configs/ama_partwise.yaml --out out/ama
"""
import sys

from raysweep.cli import main

if __name__ == "__main__":
    sys.exit(main(["merge", *sys.argv[1:]]))
