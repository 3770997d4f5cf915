"""A local lm-eval task, `demo_facts`, measuring the demo world's alignment tax.

Load it with `lm_eval.tasks.TaskManager(include_path=str(TASK_DIR), include_defaults=False)`.
The data (demo_facts.jsonl) is static and shipped; regenerate with `python -m raysweep.demo.task`.
"""
from pathlib import Path

TASK_DIR = Path(__file__).parent
TASK_NAME = "demo_facts"
