"""Run one fine-tuning job from a JSON config file, in its own process (for the kill/resume and DDP tests).

``python finetune_script.py CONFIG.json [KILL_AFTER_STEP]``: with a step, the process SIGKILLs
itself right after logging that step (mid-run, after an earlier checkpoint). Prints the result's
JSON on its last line (main process only).
"""

from __future__ import annotations

import json
import os
import signal
import sys

from longrope.train import FinetuneConfig, finetune
from longrope.train.record import LossLog


def main() -> None:
    cfg = FinetuneConfig(**json.loads(open(sys.argv[1], encoding="utf-8").read()))
    kill_after = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if kill_after:
        append = LossLog.append

        def append_then_die(self, entry):
            append(self, entry)
            if entry["step"] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        LossLog.append = append_then_die
    result = finetune(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({**result.to_dict(), "losses": list(result.losses)}))


if __name__ == "__main__":
    main()
