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


def test_a_lost_peer_is_one_line_told_by_the_survivor(make_config, tmp_path, monkeypatch, capsys):
    """battery 15: with one process of a 2-process group killed -9, the survivor's next collective failed in gloo and
    printed a 40-line traceback. Now: one line saying the group lost a process and --resume continues, told by the
    survivor whatever its rank (the shared checks' refusals are told by LOCAL_RANK 0 only)."""
    from longrope.cli import _tell
    from longrope.errors import PeerLost
    from longrope.train import loop

    def set_up(self):
        self.world = 2

    def train(self):
        raise RuntimeError(self.message)

    monkeypatch.setattr(loop._Trainer, "set_up", set_up)
    monkeypatch.setattr(loop._Trainer, "train", train)
    cfg = make_config(steps=2, output=str(tmp_path / "ft"))
    loop._Trainer.message = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
                             "by peer [127.0.0.1]:64728. This is typically caused by a remote worker crashing.")
    with pytest.raises(PeerLost, match="--resume") as caught:
        finetune(cfg)
    with monkeypatch.context() as launched:  # told by a process that is not its machine's first too
        launched.setenv("LOCAL_RANK", "1")
        _tell(str(caught.value), every_process=caught.value.every_process)
    assert "--resume" in capsys.readouterr().err
    loop._Trainer.message = "mat1 and mat2 shapes cannot be multiplied"  # not a lost peer: a bug keeps its traceback
    with pytest.raises(RuntimeError, match="shapes"):
        finetune(cfg)


def test_processes_whose_launcher_was_killed_stop_at_the_next_step(make_config, tmp_path, monkeypatch):
    """battery 20: torch starts the processes of an ``accelerate launch`` group in sessions of their own; ``kill -9``
    of the launcher (or of its process group) left them training, unseen, to the end, holding the run folder's lock.
    A process whose parent is no longer the launcher now stops at the next step with one line naming --resume; its
    checkpoints are kept and the resume continues them."""
    import os

    from longrope.errors import PeerLost
    from longrope.train import launch

    launcher, log = os.getppid(), tmp_path / "ft" / "train_log.jsonl"

    def parent() -> int:  # the launcher killed after step 3: the process is re-parented
        return 1 if log.is_file() and len(log.read_text().splitlines()) >= 3 else launcher

    monkeypatch.setattr(launch, "_launcher", launcher)
    monkeypatch.setattr(os, "getppid", parent)
    cfg = make_config(steps=6, checkpoint_every=2, output=str(tmp_path / "ft"))
    with pytest.raises(PeerLost, match="the launcher of this 1-process group stopped .* --resume"):
        finetune(cfg)
    assert [json.loads(line)["step"] for line in (tmp_path / "ft" / "train_log.jsonl").read_text().splitlines()] \
        == [1, 2, 3]
    monkeypatch.undo()
    assert finetune(make_config(steps=6, checkpoint_every=2, output=str(tmp_path / "ft"), resume=True)).resumed_from \
        == 2


def test_processes_whose_launcher_was_killed_while_they_set_up_stop_before_training(make_config, tmp_path,
                                                                                   monkeypatch):
    """battery 27a: the launcher's pid was read when training began, as the process's parent then: a launcher killed
    while its processes loaded the model (seconds of a real model's minutes of set-up) was gone already, the parent
    read was init, and they trained to the end unseen. The launcher is the parent the process had when it started (the
    command line reads it first): a process re-parented before the group formed stops then, in one line."""
    from longrope.errors import PeerLost
    from longrope.train import launch

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # started by torchrun / accelerate launch
    monkeypatch.setattr(launch, "_launcher", 4242, raising=False)  # its parent when it started, since killed
    monkeypatch.setattr(os, "getppid", lambda: 1)
    with pytest.raises(PeerLost, match="the launcher of this .*-process group stopped .*; launch the same command "
                                       "again$"):
        finetune(make_config(steps=4, output=str(tmp_path / "ft")))
    assert not (tmp_path / "ft" / "train_log.jsonl").exists()


def test_a_launcher_killed_while_the_group_forms_is_one_line(make_config, tmp_path, monkeypatch):
    """battery 27a: the launcher killed while its processes met on its store (torch.distributed's rendezvous): one
    process printed torch's DistNetworkError, 70 lines of C++ frames and a traceback. Now the line of a stopped
    launcher."""
    import torch.distributed as dist

    from longrope.errors import PeerLost
    from longrope.train import launch, loop

    monkeypatch.setattr(launch, "_launcher", os.getppid(), raising=False)

    def group_forms(self):
        monkeypatch.setattr(os, "getppid", lambda: 1)  # the launcher killed meanwhile: re-parented
        raise dist.DistNetworkError("Failed to recv, got 0 bytes. Connection was likely closed. Did the remote "
                                    "server shutdown or crash?")

    monkeypatch.setattr(loop._Trainer, "_make_accelerator", group_forms)
    with pytest.raises(PeerLost, match="the launcher of this .*-process group stopped"):
        finetune(make_config(steps=4, output=str(tmp_path / "ft")))
