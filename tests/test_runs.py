"""The run directory (`runs`), and progress bars that stay out of logs (`progress`)."""
import io
import json

import pytest

from mothello_fast.errors import CheckpointError
from mothello_fast.progress import progress_bar
from mothello_fast.runs import METRICS, RUN_CONFIG, MetricsLog, Run, read_metrics, run_source


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_only():
    log, terminal = io.StringIO(), _Terminal()
    for file in (log, terminal):
        for _ in progress_bar(True, range(3), file=file, desc="work"):
            pass
    assert log.getvalue() == ""                     # a log file: no redraws, no blank lines
    assert "work" in terminal.getvalue() and "\r" in terminal.getvalue()
    quiet = _Terminal()
    for _ in progress_bar(False, range(3), file=quiet):
        pass
    assert quiet.getvalue() == ""


def test_a_command_writes_no_bar_into_a_log(tmp_path, capsys):
    """stderr captured (not a terminal), as when a command's output goes to a log file."""
    import torch

    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.cli import main
    from mothello_fast.languages import LanguageSet
    from mothello_fast.model import GPT, GPTConfig

    ls = LanguageSet.from_spec("atomic,split")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ls.vocab_size, context_length=ls.context_length,
                          n_layers=1, n_heads=2, d_model=16, d_mlp=32))
    save_checkpoint(tmp_path / "ckpt", model=model, language_set=ls)
    assert main(["eval", str(tmp_path / "ckpt"), "--games", "4", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\n\n" not in err


def test_a_fresh_run_into_a_run_is_refused_naming_the_flags(tmp_path):
    run = Run(tmp_path / "run")
    assert run.start(resume=False) is None and run.start(resume=True) is None
    run.record(train_config={"lr": 1e-3}, model_config={}, language_set={}, world_size=1,
               source={"data": "d"}, metrics=[{"step": 0, "loss": 1.0}])
    with pytest.raises(CheckpointError, match=r"--resume.*--out"):
        run.start(resume=False)
    assert json.loads((run.path / RUN_CONFIG).read_text())["world_size"] == 1
    assert run_source(run.path) == {"data": "d"}
    assert read_metrics(run.path / METRICS, up_to_step=0) == [{"step": 0, "loss": 1.0}]


def test_the_metrics_log_appends_on_the_main_process_only(tmp_path):
    run = Run(tmp_path)
    run.record(train_config={}, model_config={}, language_set={}, world_size=2, source=None,
               metrics=[])
    main, other = MetricsLog(run, [], enabled=True), MetricsLog(run, [], enabled=False)
    main.write({"step": 1, "loss": 2.0})
    other.write({"step": 1, "loss": 3.0})
    assert run.read_metrics(up_to_step=10) == [{"step": 1, "loss": 2.0}]
    assert main.records == [{"step": 1, "loss": 2.0}] and other.records == []


def test_the_lock_refuses_a_second_writer(tmp_path):
    run = Run(tmp_path / "run")
    with run.lock():
        with pytest.raises(CheckpointError, match="training run"):
            with Run(tmp_path / "run").lock():
                pass
    with run.lock(main=False):   # other processes under torchrun take no lock
        pass
