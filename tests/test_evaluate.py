"""Legal-move evaluation's arguments, and the errors of the commands that analyse a
checkpoint (the accuracy itself is checked against slow greedy decoding in test_train)."""
import pytest
import torch

from mothello_fast.checkpoint import save_checkpoint
from mothello_fast.cli import main
from mothello_fast.errors import LanguageError
from mothello_fast.evaluate import evaluate_languages
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import generate_games


@pytest.fixture(scope="module")
def language_set():
    return LanguageSet.from_spec("atomic,atomic", unified=True)


@pytest.fixture(scope="module")
def model(language_set):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=language_set.vocab_size,
                         context_length=language_set.context_length, n_layers=1, n_heads=2,
                         d_model=16, d_mlp=32)).eval()


@pytest.mark.parametrize("languages, match", [([], "languages is empty"),
                                              (["L0", "L0"], "more than once"),
                                              (["out"], r"\['out'\] are not input languages")])
def test_a_bad_language_list_is_refused(model, language_set, languages, match):
    with pytest.raises(LanguageError, match=match):
        evaluate_languages(model, language_set, generate_games(2, seed=0), languages=languages,
                           objective="unified")


def test_the_default_languages_are_the_input_languages(model, language_set):
    result = evaluate_languages(model, language_set, generate_games(2, seed=0),
                                objective="unified")
    assert sorted(result) == ["legal_acc/L0", "legal_acc/L1", "val_loss/L0", "val_loss/L1"]


def test_an_output_path_that_cannot_be_written_is_a_command_error(tmp_path, model, language_set,
                                                                 capsys):
    save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    (tmp_path / "taken").mkdir()
    code = main(["eval", str(tmp_path / "ck"), "--games", "2", "--device", "cpu",
                 "--out", str(tmp_path / "taken")])
    assert code == 2
    assert "mothello eval: error:" in capsys.readouterr().err


def test_probe_refuses_an_output_path_that_is_a_file_before_training(tmp_path, model,
                                                                     language_set, capsys,
                                                                     monkeypatch):
    import mothello_fast.probes as probes

    def probe_model(*args, **kwargs):
        raise AssertionError("probes were trained before --out was checked")

    monkeypatch.setattr(probes, "probe_model", probe_model)
    save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    (tmp_path / "taken").write_text("")
    code = main(["probe", "--checkpoint", str(tmp_path / "ck"), "--games", "2", "--layers", "1",
                 "--language", "L0", "--device", "cpu", "--quiet", "--out",
                 str(tmp_path / "taken")])
    assert code == 2
    assert "--out" in capsys.readouterr().err


def test_a_model_and_a_language_set_that_do_not_fit_are_refused(model):
    from mothello_fast.activations import collect_activations
    from mothello_fast.evaluate import language_confusion, legal_move_accuracy

    other = LanguageSet.from_spec("atomic")   # 61 tokens; the model reads 181
    games = generate_games(2, seed=0)
    for call in (lambda: legal_move_accuracy(model, other, games, language="L0"),
                 lambda: collect_activations(model, other, games, language="L0", layers=[1],
                                             progress=False)):
        with pytest.raises(LanguageError, match="vocabulary of 181 tokens; this language set "
                                                r"\(L0\) has 61"):
            call()
    two = LanguageSet.from_spec("atomic,atomic")
    with pytest.raises(LanguageError, match="vocabulary"):
        language_confusion(model, two, games, language="L0", into="L1")


def test_a_checkpoint_whose_language_set_does_not_fit_its_model_is_refused(tmp_path, model):
    import json

    from mothello_fast.checkpoint import _manifest_digest, load_checkpoint
    from mothello_fast.errors import CheckpointError

    path = save_checkpoint(tmp_path / "ck", model=model,
                           language_set=LanguageSet.from_spec("atomic,atomic", unified=True))
    manifest = json.loads((path / "checkpoint.json").read_text())
    manifest["language_set"] = LanguageSet.from_spec("atomic").to_dict()
    manifest["manifest_sha256"] = _manifest_digest(manifest)   # signed: only the fit is off
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not fit its model"):
        load_checkpoint(path)
