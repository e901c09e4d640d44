"""Write the checkpoint samples in tests/data/checkpoints/ with the real libraries.

Run once with the generator venv (torch, lightning, transformers, keras, safetensors):

    KERAS_BACKEND=torch /work/genvenv/bin/python tests/data/generators/make_checkpoints.py

Everything is tiny (a few KB per file). Ground truth is read back from the libraries themselves
and written to tests/data/checkpoints/ground_truth.json; the tests assert runctl's inspector
(which never imports these libraries) against it. Library versions go into README.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "checkpoints"
TRUTH: dict[str, Any] = {}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def dtype_counts(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tensor in tensors.values():
        name = str(tensor.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + 1
    return counts


def record(name: str, **facts: Any) -> None:
    TRUTH[name] = facts


def make_torch() -> None:
    model = tiny_model()
    state = model.state_dict()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model(torch.randn(16, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    training = {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "epoch": 7,
        "step": 350,
        "loss": 0.4321,
        "best_val_loss": 0.3999,
    }
    out = OUT / "torch"
    out.mkdir(parents=True, exist_ok=True)
    for zip_format, fmt in ((True, "torch-zip"), (False, "torch-legacy")):
        suffix = "zip" if zip_format else "legacy"
        torch.save(
            state, out / f"state_dict_{suffix}.pt", _use_new_zipfile_serialization=zip_format
        )
        record(
            f"torch/state_dict_{suffix}.pt",
            format=fmt,
            tensor_count=len(state),
            parameter_count=params,
            dtypes=dtype_counts(state),
            keys=sorted(state),
            epoch=None,
            step=None,
            shapes={k: list(v.shape) for k, v in state.items()},
        )
        torch.save(
            training, out / f"training_{suffix}.pth", _use_new_zipfile_serialization=zip_format
        )
        loaded = torch.load(out / f"training_{suffix}.pth", weights_only=True)
        record(
            f"torch/training_{suffix}.pth",
            format=fmt,
            tensor_count=len(loaded["model_state_dict"]),
            parameter_count=sum(t.numel() for t in loaded["model_state_dict"].values()),
            dtypes=dtype_counts(loaded["model_state_dict"]),
            keys=sorted(loaded),
            epoch=loaded["epoch"],
            step=loaded["step"],
            metrics={"loss": loaded["loss"], "best_val_loss": loaded["best_val_loss"]},
        )
    # HF-style pytorch_model.bin is torch.save of a state dict under another name.
    torch.save(state, out / "pytorch_model.bin")
    record(
        "torch/pytorch_model.bin",
        format="torch-zip",
        tensor_count=len(state),
        parameter_count=params,
        dtypes=dtype_counts(state),
    )
    # An alias as users make them: best.pt -> training_zip.pth
    alias = out / "best.pt"
    if alias.is_symlink() or alias.exists():
        alias.unlink()
    alias.symlink_to("training_zip.pth")


def make_safetensors() -> None:
    from safetensors.torch import save_file

    out = OUT / "safetensors"
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    tensors = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    tensors["step_counter"] = torch.tensor([1200], dtype=torch.int64)
    metadata = {"format": "pt", "epoch": "3", "step": "1200", "val_loss": "0.25"}
    save_file(tensors, out / "model.safetensors", metadata=metadata)
    record(
        "safetensors/model.safetensors",
        format="safetensors",
        tensor_count=len(tensors),
        parameter_count=sum(t.numel() for t in tensors.values()),
        dtypes=dtype_counts(tensors),
        metadata=metadata,
        shapes={k: list(v.shape) for k, v in tensors.items()},
    )

    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    bert = BertModel(config)
    sharded = out / "sharded"
    if sharded.exists():
        shutil.rmtree(sharded)
    bert.save_pretrained(sharded, max_shard_size="2KB", safe_serialization=True)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    from safetensors import safe_open

    total = 0
    count = 0
    for shard in shards:
        with safe_open(sharded / shard, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += math.prod(handle.get_slice(key).get_shape())
                count += 1
    record(
        "safetensors/sharded/model.safetensors.index.json",
        format="safetensors",
        shards=shards,
        tensor_count=count,
        parameter_count=total,
        model_parameters=sum(p.numel() for p in bert.parameters()),
    )


def make_lightning() -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_model()

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    out = OUT / "lightning"
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = x[:, :2] * 0.5
    train = DataLoader(TensorDataset(x, y), batch_size=8)
    val = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    callback = ModelCheckpoint(
        dirpath=out, monitor="val_loss", mode="min", save_top_k=2, save_last=True
    )
    trainer = L.Trainer(
        max_epochs=4,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=out,
    )
    model = Tiny()
    trainer.fit(model, train, val)
    params = sum(p.numel() for p in model.parameters())
    for ckpt in sorted(out.glob("*.ckpt")):
        data = torch.load(ckpt, weights_only=False)
        cb_key = next(k for k in data["callbacks"] if k.startswith("ModelCheckpoint"))
        cb = data["callbacks"][cb_key]
        record(
            f"lightning/{ckpt.name}",
            format="lightning",
            epoch=data["epoch"],
            step=data["global_step"],
            tensor_count=len(data["state_dict"]),
            parameter_count=params,
            keys=sorted(data),
            best_model_path_name=Path(cb["best_model_path"]).name,
            best_model_score=float(cb["best_model_score"]),
            current_score=None if cb.get("current_score") is None else float(cb["current_score"]),
            lightning_version=data.get("pytorch-lightning_version"),
        )
    for stray in out.glob("*"):
        if stray.is_dir():
            shutil.rmtree(stray)


def make_hf_trainer() -> None:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    class Data(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __init__(self, n: int) -> None:
            g = torch.Generator().manual_seed(1)
            self.ids = torch.randint(0, 32, (n, 6), generator=g)
            self.labels = (self.ids[:, 0] % 2).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    out = OUT / "hf_trainer"
    if out.exists():
        shutil.rmtree(out)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=6,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        learning_rate=0.05,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Data(24), eval_dataset=Data(8))
    trainer.train()
    params = sum(p.numel() for p in model.parameters())
    for ckpt in sorted(out.glob("checkpoint-*")):
        state = json.loads((ckpt / "trainer_state.json").read_text())
        record(
            f"hf_trainer/{ckpt.name}",
            format="hf-trainer",
            step=state["global_step"],
            epoch=state["epoch"],
            best_model_checkpoint_name=Path(state["best_model_checkpoint"]).name
            if state.get("best_model_checkpoint")
            else None,
            best_metric=state.get("best_metric"),
            parameter_count=params,
            files=sorted(p.name for p in ckpt.iterdir()),
        )
    for stray in out.iterdir():
        if not stray.name.startswith("checkpoint-"):
            shutil.rmtree(stray) if stray.is_dir() else stray.unlink()


def make_keras() -> None:
    import keras

    out = OUT / "keras"
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(shape=(4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)],
        name="tiny",
    )
    model.compile(optimizer="adam", loss="mse")
    path = out / "tiny.keras"
    model.save(path)
    record(
        "keras/tiny.keras",
        format="keras",
        parameter_count=int(model.count_params()),
        model_name=model.name,
        keras_version=keras.__version__,
        layer_count=len(model.layers),
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    make_torch()
    make_safetensors()
    make_keras()
    make_lightning()
    make_hf_trainer()
    (OUT / "ground_truth.json").write_text(json.dumps(TRUTH, indent=2, sort_keys=True) + "\n")
    import keras
    import lightning
    import safetensors
    import transformers

    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "keras": keras.__version__,
    }
    (OUT / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
