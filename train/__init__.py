"""Fine-tuning on a published version and scoring the result (`sftpipe train`, `score`, `runs list`).

In the order a run uses them:

    cli.py          the three commands; light (no torch at import), registered into the main CLI
    config.py       the `train:` config section (base model, hyper-parameters)
    run.py          train_version / score_run: the one path every task goes through, ONE scoring path
    data.py         opening a published version (resolution by pipeline.store.VersionStore), reading splits
    tasks/          what a kind of fine-tuning supplies (tasks/base.py: the Task interface) and the registry;
                    tasks/classification/ is the first task
    runtime.py      device, precision, batch sizes
    tokenization.py batched tokenization, cached by content
    trainer.py      TrainingArguments, the class-weighted Trainer, in-order prediction
    progress.py     the progress bar shown while training
    card.py         the model card's frame (README.md of a run)
    runs.py         the run index (index.jsonl)

Nothing in pipeline/ or stages/ imports this package except the CLI, which registers its commands.
"""
