"""Ray job entrypoint for a sweep: the same path as `raysweep sweep`, inside a submitted job.

    ray job submit --working-dir . -- python jobs/sweep.py configs/demo.yaml name=cluster-try
"""
import sys

from raysweep.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
