"""Data parallel: ``accelerate launch`` with 2 CPU processes trains exactly like 1 process, same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from longrope.train import accelerate_config, finetune

SCRIPT = Path(__file__).with_name("finetune_script.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_give_the_loss_of_one(make_config, tmp_path):
    from safetensors.torch import load_file

    one = finetune(make_config(steps=3, tokens_per_step=2 * 64, output=str(tmp_path / "one")))
    assert one.num_processes == 1 and one.grad_accum == 2
    cfg = make_config(steps=3, tokens_per_step=2 * 64, output=str(tmp_path / "two"))
    cfg_file = tmp_path / "two.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config("cpu-ddp")),
           "--num_processes", "2", "--main_process_port", str(_free_port()), str(SCRIPT), str(cfg_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.strip().splitlines()[-1])
    assert two["num_processes"] == 2 and two["grad_accum"] == 1 and two["tokens"] == one.tokens
    np.testing.assert_allclose(two["losses"], one.losses, rtol=1e-5)
    a = load_file(one.model_dir / "model.safetensors")
    b = load_file(Path(two["model_dir"]) / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_fsdp_on_one_gpu_trains_like_one_plain_process(make_config, tmp_path):
    """The shipped FSDP2 config on one GPU (needs CUDA): same losses as the plain single-process loop."""
    from safetensors.torch import load_file

    one = finetune(make_config(steps=3, device="cuda", output=str(tmp_path / "one")))
    cfg = make_config(steps=3, device="cuda", output=str(tmp_path / "fsdp"))
    cfg_file = tmp_path / "fsdp.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config("fsdp")),
           "--num_processes", "1", "--mixed_precision", "no", "--main_process_port", str(_free_port()), str(SCRIPT),
           str(cfg_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fsdp = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(fsdp["losses"], one.losses, rtol=1e-4)
    a = load_file(one.model_dir / "model.safetensors")
    b = load_file(Path(fsdp["model_dir"]) / "model.safetensors")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)
