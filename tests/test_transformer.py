"""The transformer family: causal masking, attention maps, the algorithmic datasets, the text corpus
loader and its errors, and short trainings that log the sample and the attention plot."""

from __future__ import annotations

import math
from collections import Counter

import mlflow
import pytest
import torch

import zoo
from zoo_builtins import text as text_data
from zoo_builtins import transformer as tf
from zoo.training.train import train

SMALL = dict(d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0, activation="gelu")


def _tokens(vocab: int = 12, length: int = 10, **meta) -> zoo.DataInfo:
    return zoo.DataInfo(kind="text", task="next_token", input_shape=(length,), output_dim=vocab,
                        meta={"vocab_size": vocab, **meta})


def _change_token(x: torch.Tensor, t: int, vocab: int) -> torch.Tensor:
    changed = x.clone()
    changed[:, t] = (x[:, t] + 1) % vocab
    return changed


def test_gpt_does_not_look_ahead():
    torch.manual_seed(0)
    model = tf.build_gpt(_tokens(), **SMALL).eval()
    x = torch.randint(12, (3, 10))
    with torch.no_grad():
        before, after = model(x), model(_change_token(x, 6, 12))
    assert before.shape == (3, 10, 12)
    assert torch.allclose(before[:, :6], after[:, :6], atol=1e-6)  # positions before the change: untouched
    assert not torch.allclose(before[:, 6:], after[:, 6:], atol=1e-4)  # the changed position onwards: not
    maps = model.attention_maps(x)
    assert maps.shape == (2, 2, 10, 10)
    assert torch.all(maps.triu(1) == 0)  # no weight on any future key
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 10))


def test_encoder_attends_both_ways():
    torch.manual_seed(0)
    model = tf.build_transformer(_tokens(), **SMALL, pool="mean").eval()
    x = torch.randint(12, (3, 10))
    with torch.no_grad():
        before, after = model(x), model(_change_token(x, 6, 12))
    assert not torch.allclose(before[:, :6], after[:, :6], atol=1e-4)  # earlier positions see a later token
    future = torch.ones(10, 10, dtype=torch.bool).triu(1)
    assert (model.attention_maps(x)[..., future] > 0).all()


@pytest.mark.parametrize("build", [tf.build_gpt, tf.build_transformer])
def test_plot_attention_path_matches_fused_attention(build):
    torch.manual_seed(0)
    extra = {} if build is tf.build_gpt else {"pool": "mean"}
    model = build(_tokens(), **SMALL, **extra).eval()
    x = torch.randint(12, (4, 10))
    with torch.no_grad():
        fused, none = model.features(x)
        explicit, maps = model.features(x, need_weights=True)
    assert none == [None, None]
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert maps[0].shape == (4, 2, 10, 10)


def test_pooled_outputs_for_sequence_targets():
    torch.manual_seed(0)
    floats = zoo.DataInfo(kind="sequence", task="regression", input_shape=(7, 3), output_dim=2)
    model = tf.build_transformer(floats, **SMALL, pool="max")
    assert model(torch.randn(5, 7, 3)).shape == (5, 2)
    per_sequence = zoo.DataInfo(kind="text", task="classification", input_shape=(9,), output_dim=4,
                                meta={"vocab_size": 20, "per_token": False})
    model = tf.build_transformer(per_sequence, **SMALL, pool="mean")
    assert model(torch.randint(20, (5, 9))).shape == (5, 4)
    with pytest.raises(ValueError, match="Cannot forward sequence of length 12, block size is only 9"):
        model(torch.randint(20, (1, 12)))


@pytest.mark.parametrize("change, message", [
    ({"d_model": 10, "n_heads": 4}, "model.d_model=10 is not a multiple of model.n_heads=4"),
    ({"n_layers": 0}, "model.n_layers=0 is out of range"),
    ({"dropout": 1.0}, "model.dropout=1.0 is out of range"),
    ({"activation": "swish"}, "model.activation='swish' is not an activation"),
    ({"pool": "cls"}, "model.pool='cls' is not a pooling"),
])
def test_bad_hyperparameters_name_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        tf.build_transformer(_tokens(), **{**SMALL, "pool": "mean", **change})


def test_reverse_and_sort_targets(registry):
    reverse = registry.dataset("reverse").decl.load(seed=3, length=9, n_samples=120, vocab_size=10)
    assert (reverse.info.kind, reverse.info.task, reverse.info.input_shape) == ("text", "classification", (9,))
    assert reverse.info.output_dim == 10 and reverse.info.meta["itos"][7] == "7"
    for split in (reverse.train, reverse.val, reverse.test):
        assert split.x.dtype == torch.long and split.x.max() < 10
        assert torch.equal(split.y, split.x.flip(1))
    assert len(reverse.train) + len(reverse.val) + len(reverse.test) == 120
    sort = registry.dataset("sort").decl.load(seed=3, length=9, n_samples=120, vocab_size=5)
    x, y = sort.train.x, sort.train.y
    assert (y[:, 1:] >= y[:, :-1]).all()
    assert torch.equal(y, x.sort(dim=1).values)


SENTENCES = ("The keeper fed the giraffes at dawn. ", "A river bends slowly past the old mill. ",
             "Attention lets every token look at every other token. ", "Zebras dozed; the crows argued!\n")


def test_text_loader_on_a_small_file(tmp_path):
    text = "".join(SENTENCES[i % 4] + f"({i}) " for i in range(40))
    path = tmp_path / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    splits = text_data.load_text(seed=0, path=str(path), block_size=8, stride=4, max_chars=None)
    info = splits.info
    assert (info.kind, info.task, info.input_shape) == ("text", "next_token", (8,))
    assert info.meta["itos"] == sorted(set(text)) and info.output_dim == len(set(text))
    counts = Counter(text)
    entropy = -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())
    assert info.meta["unigram_nats"] == pytest.approx(entropy)
    itos = info.meta["itos"]
    for split in (splits.train, splits.val, splits.test):
        assert split.x.shape[1] == 8 and torch.equal(split.y[:, :-1], split.x[:, 1:])  # targets: the next char
        for x, y in zip(split.x[:5].tolist(), split.y[:5].tolist()):
            assert "".join(itos[i] for i in x + y[-1:]) in text
    # validation windows tile whole chunks: each of their characters is predicted exactly once
    assert len(splits.val) % text_data.CHUNK_WINDOWS == 0 and len(splits.test) % text_data.CHUNK_WINDOWS == 0
    assert len(splits.train) > 2 * len(splits.val)  # train windows overlap (stride 4 < block 8)
    short = text_data.load_text(seed=0, path=str(path), block_size=8, stride=8, max_chars=400)
    assert short.info.meta["chars"] == 400
    with pytest.raises(ValueError, match=r"is too short: 400 characters make 3 chunks of 129 .* data.block_size"):
        text_data.load_text(seed=0, path=str(path), block_size=16, stride=8, max_chars=400)


def test_default_corpus_ships_with_the_plugin():
    raw = text_data.DEFAULT_CORPUS.read_bytes()
    assert len(raw) >= 100_000
    _, text = text_data.read_corpus(None)
    assert len(set(text.split())) > 3000  # varied prose, not a template repeated


@pytest.mark.parametrize("case", ["missing", "empty", "binary", "not_utf8", "directory"])
def test_text_loader_rejects_unusable_files(tmp_path, case):
    path = tmp_path / f"{case}.txt"
    if case == "empty":
        path.write_bytes(b"  \n")
    elif case == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif case == "not_utf8":
        path.write_bytes("caf\u00e9 au lait, cr\u00e8me br\u00fbl\u00e9e ".encode("latin-1") * 50)
    elif case == "directory":
        path.mkdir()
    with pytest.raises(ValueError) as info:
        text_data.load_text(seed=0, path=str(path), block_size=8, stride=4, max_chars=None)
    message = str(info.value)
    expected = {"missing": "does not exist", "empty": "is empty", "binary": "is not text",
                "not_utf8": "is not UTF-8 text", "directory": "is not a file"}[case]
    assert message.startswith(f"data.path={str(path)!r} {expected}")
    assert "point data.path at a UTF-8 text file" in message and "\n" not in message


def test_unusable_corpus_fails_before_a_run_exists(make_cfg, store, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(zoo.ZooError, match=r"^data=text: data.path=.*empty.txt' is empty"):
        train(make_cfg("model=gpt", "data=text", f"data.path={empty}"))
    client = mlflow.MlflowClient(store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def _artifacts(client, run_id: str, folder: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


def test_short_gpt_training_logs_sample_and_attention(make_cfg, client, tmp_path):
    cfg = make_cfg("model=gpt", "data=text", "data.block_size=16", "data.stride=8", "data.max_chars=6000",
                   "model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.d_ff=64",
                   "optimizer.lr=0.01", "trainer.batch_size=32", "trainer.max_epochs=3",
                   "tracking.log_model=false")
    metrics = train(cfg)
    run = client.get_run(metrics["run_id"])
    assert run.info.status == "FINISHED"
    vocab = len(set(text_data.read_corpus(None)[1][:6000]))
    val_loss = run.data.metrics["val/loss"]
    assert val_loss < math.log(vocab) - 0.3  # nats per character: clearly better than a uniform guess
    assert run.data.metrics["val/perplexity"] == pytest.approx(math.exp(val_loss), rel=1e-3)
    assert {"plots/sample.txt", "plots/attention.png"} <= _artifacts(client, run.info.run_id, "plots")
    (tmp_path / "dl").mkdir()
    sample = client.download_artifacts(run.info.run_id, "plots/sample.txt", str(tmp_path / "dl"))
    text = open(sample, encoding="utf-8").read()
    assert "unigram baseline of the corpus" in text
    generated = text.split("--- generated ---\n", 1)[1].rstrip("\n")
    assert len(generated) >= 390  # 400 sampled characters (a sampled newline may end it)


def test_short_reverse_training_logs_predictions_and_attention(make_cfg, client):
    cfg = make_cfg("model=transformer", "data=reverse", "data.length=8", "data.n_samples=2000",
                   "model.d_model=32", "model.d_ff=64", "model.dropout=0.0", "optimizer.lr=0.003",
                   "trainer.max_epochs=3", "tracking.log_model=false")
    metrics = train(cfg)
    assert metrics["test/accuracy"] > 0.9  # chance is 0.1 per token
    run = client.get_run(metrics["run_id"])
    assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["test/accuracy"])
    assert {"plots/predictions.txt", "plots/attention.png"} <= _artifacts(client, run.info.run_id, "plots")
