"""The offline demo world: a toy task where ExPO's alpha curve rises, peaks and collapses on CPU.

    task.py      the synthetic task, its split, SFT corpus and `task_reward` (pure Python)
    training.py  tokenizer, tiny Llama, SFT / sampling / DPO / reward-model loops (torch)
    world.py     `ensure_world` (cached, atomic build), `resolve_demo_uri` for demo:// paths
    lmeval/      the `demo_facts` lm-eval task (alignment tax), static data shipped here
"""
