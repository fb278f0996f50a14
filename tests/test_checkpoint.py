"""Checkpoints: round trips, and refusal of truncated, corrupted or incompatible ones."""
import json

import pytest
import torch

from mothello_fast.checkpoint import (_manifest_digest, find_latest_checkpoint, load_checkpoint,
                                      load_model, save_checkpoint)
from mothello_fast.errors import CheckpointError
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.train import TrainConfig, make_optimizer


@pytest.fixture(scope="module")
def language_set():
    return LanguageSet.from_spec("atomic,split", seed=3)


def make_model(language_set, d_model=32):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=language_set.vocab_size,
                         context_length=language_set.context_length, n_layers=2, n_heads=4,
                         d_model=d_model, d_mlp=64))


def trained_pair(language_set):
    """A model and an AdamW optimizer that has taken two steps (so it has state)."""
    model = make_model(language_set)
    optimizer = make_optimizer(model, TrainConfig())
    tokens = torch.randint(1, language_set.vocab_size, (4, 20), generator=torch.Generator()
                           .manual_seed(1))
    for _ in range(2):
        model(tokens, tokens)[1].backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer, tokens


def test_loaded_model_gives_the_same_logits_in_eval_mode(tmp_path, language_set):
    model, optimizer, tokens = trained_pair(language_set)
    save_checkpoint(tmp_path / "ck", model=model, language_set=language_set, step=2,
                    optimizer=optimizer)
    loaded, loaded_languages = load_model(tmp_path / "ck")
    assert not loaded.training
    model.eval()
    assert torch.equal(loaded(tokens)[0], model(tokens)[0])
    assert loaded_languages.to_dict() == language_set.to_dict()


def test_optimizer_state_and_step_round_trip(tmp_path, language_set):
    model, optimizer, _ = trained_pair(language_set)
    save_checkpoint(tmp_path / "ck", model=model, language_set=language_set, step=7,
                    optimizer=optimizer, train_config={"lr": 0.1})
    fresh_model = make_model(language_set)
    fresh = make_optimizer(fresh_model, TrainConfig())
    ckpt = load_checkpoint(tmp_path / "ck", model=fresh_model, optimizer=fresh)
    assert (ckpt.step, ckpt.train_config) == (7, {"lr": 0.1})
    want, got = optimizer.state_dict(), fresh.state_dict()
    assert want["param_groups"] == got["param_groups"]
    assert set(want["state"]) == set(got["state"])
    for index, state in want["state"].items():
        for key, value in state.items():
            assert torch.equal(got["state"][index][key], value), (index, key)


def test_truncated_weights_are_refused(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        load_model(path)


def test_corrupted_weights_are_refused(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(path)


def test_truncated_manifest_is_refused(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    text = (path / "checkpoint.json").read_text()
    (path / "checkpoint.json").write_text(text[:len(text) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint manifest"):
        load_model(path)


def test_unfinished_write_is_not_a_checkpoint(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    save_checkpoint(tmp_path / "step-000004", model=model, language_set=language_set, step=4)
    (tmp_path / "step-000008.partial").mkdir()
    (tmp_path / "step-000008.partial" / "model.safetensors").write_bytes(b"half")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step-000004"
    with pytest.raises(CheckpointError, match="checkpoint.json is missing.*unfinished write"):
        load_model(tmp_path / "step-000008")


def test_checkpoint_from_another_model_config_is_refused(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    with pytest.raises(CheckpointError, match="d_model: checkpoint 32, expected 64"):
        load_checkpoint(path, model=make_model(language_set, d_model=64))


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    manifest = json.loads((path / "checkpoint.json").read_text())
    manifest["model_config"]["d_mlp"] = 128
    manifest["manifest_sha256"] = _manifest_digest(manifest)  # a consistent, wrong manifest
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        load_model(path)


def test_saving_over_a_checkpoint_replaces_it(tmp_path, language_set):
    first, _, tokens = trained_pair(language_set)
    save_checkpoint(tmp_path / "ck", model=make_model(language_set), language_set=language_set,
                    step=1)
    save_checkpoint(tmp_path / "ck", model=first, language_set=language_set, step=2)
    loaded, _ = load_model(tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck").step == 2
    assert torch.equal(loaded(tokens)[0], first.eval()(tokens)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_changed_digit_in_the_manifest_is_refused(tmp_path, language_set):
    model, optimizer, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set, step=2,
                           optimizer=optimizer)
    text = (path / "checkpoint.json").read_text()
    assert text.count('"step": 2,') == 1
    (path / "checkpoint.json").write_text(text.replace('"step": 2,', '"step": 3,'))
    with pytest.raises(CheckpointError, match=r"ck/checkpoint.json' is corrupted: its contents "
                                              r"do not match its manifest_sha256"):
        load_checkpoint(path)


def test_extra_with_integer_keys_loads_back_as_json_reads_it(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set,
                           extra={"by_step": {10: 1, 2: 2}, "mixed": {1: "a", "b": 2}})
    assert load_checkpoint(path).extra == {"by_step": {"10": 1, "2": 2},
                                           "mixed": {"1": "a", "b": 2}}


def test_a_manifest_written_before_the_manifest_digest_still_loads(tmp_path, language_set):
    model, optimizer, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set, step=5,
                           optimizer=optimizer)
    manifest = json.loads((path / "checkpoint.json").read_text())
    del manifest["manifest_sha256"]
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="no manifest_sha256"):
        assert load_checkpoint(path).step == 5


@pytest.mark.parametrize("key, value, message", [
    ("step", "5", "step='5': expected an integer >= 0"),
    ("step", -1, "step=-1: expected an integer >= 0"),
    ("files", [], "files=\\[\\]: expected a JSON object"),
    ("model_config", None, "model_config=None: expected a JSON object"),
    ("files", {"../x": {"bytes": 1, "sha256": "0"}}, "files='../x'"),
    ("files", {"model.safetensors": {"bytes": "9"}}, "files\\['model.safetensors'\\]")])
def test_every_field_of_a_manifest_without_its_digest_is_type_checked(tmp_path, language_set,
                                                                      key, value, message):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set, step=5)
    manifest = json.loads((path / "checkpoint.json").read_text())
    del manifest["manifest_sha256"]
    manifest[key] = value
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_directories_not_named_step_and_digits_are_not_checkpoints(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    save_checkpoint(tmp_path / "step-000002", model=model, language_set=language_set, step=2)
    save_checkpoint(tmp_path / "step-000002-copy", model=model, language_set=language_set,
                    step=2)
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step-000002"


def test_map_location_places_weights_and_optimizer_state(tmp_path, language_set):
    model, optimizer, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set,
                           optimizer=optimizer)
    ckpt = load_checkpoint(path, map_location="meta")
    assert {v.device.type for v in ckpt.model_state.values()} == {"meta"}
    assert {v.device.type for state in ckpt.optimizer_state["state"].values()
            for v in state.values() if torch.is_tensor(v)} == {"meta"}
    assert ckpt.rng_state["rng.torch"].device.type == "cpu"   # torch.set_rng_state wants CPU


def test_a_run_directory_or_latest_names_its_newest_checkpoint(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    run = tmp_path / "run"
    for step in (1, 12, 3):
        save_checkpoint(run / "checkpoints" / f"step-{step:06d}", model=model,
                        language_set=language_set, step=step)
    for path in (run, run / "checkpoints", run / "checkpoints" / "latest"):
        assert load_checkpoint(path).step == 12
    assert load_checkpoint(run / "checkpoints" / "step-000003").step == 3
    with pytest.raises(CheckpointError, match="checkpoint.json is missing"):
        load_checkpoint(tmp_path / "elsewhere" / "latest")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("location", ["cuda", "cuda:0"])
def test_a_map_location_this_machine_lacks_is_named(tmp_path, language_set, location):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    with pytest.raises(CheckpointError, match=f"map_location='{location}'"):
        load_checkpoint(path, map_location=location)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_model_device_this_machine_lacks_is_named(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    with pytest.raises(ValueError, match="device='cuda'"):
        load_model(path, device="cuda")


def test_load_model_takes_the_auto_device(tmp_path, language_set):
    model, _, _ = trained_pair(language_set)
    path = save_checkpoint(tmp_path / "ck", model=model, language_set=language_set)
    loaded, _ = load_model(path, device="auto")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert {p.device.type for p in loaded.parameters()} == {want}


@pytest.mark.parametrize("step", [-1, 2.5, "3"])
def test_a_bad_step_is_refused_before_anything_is_written(tmp_path, language_set, step):
    model, _, _ = trained_pair(language_set)
    with pytest.raises(CheckpointError, match=f"step={step!r}"):
        save_checkpoint(tmp_path / "ck", model=model, language_set=language_set, step=step)
    assert list(tmp_path.iterdir()) == []
