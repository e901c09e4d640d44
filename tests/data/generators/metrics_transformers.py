"""Sample: transformers' Trainer on a tiny randomly initialised GPT-2 built from a config.

No download: the model comes from a 2-layer GPT2Config with tiny dimensions and the data is
synthetic token ids. Two runs:
- hf_console/: report_to="none"; console.raw is the Trainer's terminal output (its printed
  log dicts and tqdm bar) captured through a pty, trainer_state.json is the Trainer's own file
  from the last checkpoint (log_history, best_metric, best_model_checkpoint).
- hf_tensorboard/: report_to="tensorboard"; the event file the Trainer's TensorBoard callback
  wrote (tags such as train/loss, eval/loss).
Each folder's ground_truth.json is `trainer.state.log_history` (and best_metric /
best_model_checkpoint) taken from the trainer object after training.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from metrics_capture import out_dir, run_in_pty


def child(truth_path: str, work: str, report_to: str) -> None:
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=64,
        n_positions=16,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)

    class Synthetic(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, n: int, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(0, 64, (n, 16), generator=g)

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    args = TrainingArguments(
        output_dir=work,
        max_steps=12,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=5e-3,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=6,
        save_steps=6,
        save_strategy="steps",
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        report_to=report_to,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Synthetic(64, 1), eval_dataset=Synthetic(16, 2)
    )
    trainer.train()
    state = trainer.state
    with open(truth_path, "w") as fh:
        json.dump(
            {
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "log_history": state.log_history,
                "best_metric": state.best_metric,
                "best_model_checkpoint": state.best_model_checkpoint,
                "output_dir": work,
            },
            fh,
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        for name, report_to in (("hf_console", "none"), ("hf_tensorboard", "tensorboard")):
            target = out_dir(name)
            for old in target.iterdir():
                old.unlink()
            work = tempfile.mkdtemp()
            raw = run_in_pty(
                [__file__, "--child", str(target / "ground_truth.json"), work, report_to],
                env={"TENSORBOARD_LOGGING_DIR": f"{work}/tb"},
            )
            if name == "hf_console":
                (target / "console.raw").write_bytes(raw)
                last = max(Path(work).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                shutil.copy(last / "trainer_state.json", target / "trainer_state.json")
            else:
                for event in Path(work).glob("tb/**/events.out.tfevents.*"):
                    shutil.copy(event, target / event.name)
            shutil.rmtree(work)
            print(f"{name}: wrote {len(raw)} bytes")
