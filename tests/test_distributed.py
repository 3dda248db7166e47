"""DDP on CPU (gloo, 2 processes under torchrun): one training step equals the single-process step
on the concatenated batch — same loss, same updated weights (SGD, so the update is −lr × gradient)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dml_core.config import TrainConfig
from dml_core.engine.trainer import Trainer
from dml_core.presets import preset

CONFIG = {
    **preset("toy"),
    "loss": "margin",
    "loss_options": {},
    "miner": "distance",
    "sampler": "class_random",
    "samples_per_class": 4,
    "batch_size": 16,
    "optimizer": "sgd",
    "momentum": 0.0,
    "lr": 0.5,
    "epochs": 1,
}

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer

    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    trainer = Trainer(config)
    batch = trainer.context.local_slice(next(iter(trainer.sampler)))
    inputs, labels = trainer.train_set.tensors()
    trainer._train_step(inputs[batch], labels[batch])
    state = {k: v.numpy() for k, v in trainer.model.state_dict().items()}
    state.update({"loss." + k: v.detach().numpy() for k, v in trainer.loss.state_dict().items()})
    np.savez(sys.argv[2] + f"/rank{trainer.context.rank}.npz", loss=trainer.last_loss.numpy(), **state)
    trainer.context.shutdown()
    """
)


@pytest.mark.slow
def test_two_process_step_equals_single_process_step(tmp_path: Path) -> None:
    import json

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            "--standalone",
            str(script),
            json.dumps(CONFIG),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    single = Trainer(TrainConfig.from_dict(CONFIG))
    batch = next(iter(single.sampler))
    inputs, labels = single.train_set.tensors()
    single._train_step(inputs[batch], labels[batch])
    expected = {k: v.numpy() for k, v in single.model.state_dict().items()}
    expected.update({"loss." + k: v.detach().numpy() for k, v in single.loss.state_dict().items()})

    for rank in (0, 1):
        with np.load(tmp_path / f"rank{rank}.npz") as got:
            np.testing.assert_allclose(got["loss"], single.last_loss.numpy(), rtol=1e-5, atol=1e-6)
            for name, value in expected.items():
                np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    moved = any(
        not torch.equal(torch.as_tensor(expected[k]), v)
        for k, v in Trainer(TrainConfig.from_dict(CONFIG)).model.state_dict().items()
    )
    assert moved, "the step changed the weights (otherwise the comparison proves nothing)"


RESUME_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import torch
    import dml_core.engine.run_folder as run_folder
    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer

    settle = run_folder.settle_pending

    def slow_settle(run_dir):
        time.sleep(3)  # a slow disk on rank 0: the other ranks must not read `last` before it
        return settle(run_dir)

    run_folder.settle_pending = slow_settle
    out = sys.argv[1]
    config = TrainConfig.from_dict(json.loads(open(out + "/config.json").read()))
    trainer = Trainer(config, out, resume=True, progress=False)
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    with open(f"{out}/../rank{trainer.context.rank}.json", "w") as handle:
        json.dump({"step": trainer.step, "weights": weights.tolist()}, handle)
    trainer.close()
    trainer.context.shutdown()
    """
)


@pytest.mark.slow
def test_every_rank_resumes_from_the_checkpoint_rank_0_settles(tmp_path: Path) -> None:
    """A crash after the commit point leaves the new ``last`` pending (``save_run_checkpoint``);
    on resume rank 0 moves it into place, and no rank may read ``last`` before that."""
    import json
    import shutil

    from dml_core.engine.checkpoint import LAST_FILE, PENDING_LAST

    out = tmp_path / "run"
    config = {**CONFIG, "eval_every": 1}
    Trainer(TrainConfig.from_dict(config), out, progress=False).run()
    first_last = (out / LAST_FILE).read_bytes()
    two_epochs = {**config, "epochs": 2}
    (out / "config.json").write_text(json.dumps(two_epochs))
    Trainer(TrainConfig.from_dict(two_epochs), out, resume=True, progress=False).run()
    # The crash: epoch 2's state is committed, its `last` not yet moved into place.
    (out / LAST_FILE).rename(out / PENDING_LAST)
    (out / LAST_FILE).write_bytes(first_last)
    reference = tmp_path / "reference"
    shutil.copytree(out, reference)
    expected = Trainer(TrainConfig.from_dict(two_epochs), reference, resume=True, progress=False)
    expected.close()
    expected_weights = torch.cat([p.detach().flatten() for p in expected.model.parameters()])

    script = tmp_path / "worker.py"
    script.write_text(RESUME_WORKER)
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--standalone", str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / PENDING_LAST).exists()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["step"] == expected.step
        np.testing.assert_array_equal(np.array(got["weights"], np.float32), expected_weights)
    assert (out / LAST_FILE).read_bytes() != first_last  # the comparison is not vacuous
