"""EnSiam pretraining on folders of images, in one process or data-parallel under torchrun.

    python -m repens_sklearn.pretrain FOLDER [FOLDER ...] -o encoder.joblib [options]
    torchrun --nproc_per_node 4 -m repens_sklearn.pretrain FOLDER -o encoder.joblib [options]

Every process reads the same file list; each trains on its share of every batch
(``--batch-size`` is the global batch). Rank 0 alone prints, writes the checkpoints
(``--checkpoint-dir``, on a filesystem every process sees) and the fitted
``EnSiamPretrainer`` (joblib), which loads in any process, CPU included. See
docs/distributed.md.
"""

from __future__ import annotations

import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m repens_sklearn.pretrain",
        description="Self-supervised EnSiam / SimSiam pretraining on image files; "
        "data-parallel when launched with torchrun.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders (recursively)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="where rank 0 writes the fitted EnSiamPretrainer (joblib)",
    )
    parser.add_argument(
        "--backbone",
        default="resnet18_cifar",
        help="registered backbone name (default: %(default)s)",
    )
    parser.add_argument(
        "--input-shape",
        default=None,
        metavar="C,H,W",
        help="decode every image to this shape (default: the most common size among the files)",
    )
    parser.add_argument("--epochs", type=int, default=200, help="(default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="global batch over all processes (default: %(default)s)",
    )
    parser.add_argument("--n-views", type=int, default=4, help="K (default: %(default)s)")
    parser.add_argument("--target", choices=("ensemble", "pair"), default="ensemble")
    parser.add_argument("--policy", default="simsiam", help="(default: %(default)s)")
    parser.add_argument("--base-lr", type=float, default=0.1, help="(default: %(default)s)")
    parser.add_argument(
        "--no-sync-batchnorm",
        action="store_true",
        help="BatchNorm over each process's share instead of the global batch",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="FOLDER",
        help="checkpoint every epoch and resume from it after a kill",
    )
    parser.add_argument("--num-workers", type=int, default=0, help="decoding processes")
    parser.add_argument("--device", default="auto", help="(default: %(default)s)")
    parser.add_argument(
        "--backend",
        choices=("nccl", "gloo"),
        default=None,
        help="torch.distributed backend (default: NCCL on CUDA, else gloo)",
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def main(argv=None) -> int:
    import joblib

    from .. import EnSiamPretrainer, init_distributed
    from ..cli import _collect_images, _parse_shape

    args = build_parser().parse_args(argv)
    dp = init_distributed(args.backend)
    main_rank = dp is None or dp.is_main
    try:
        files = _collect_images(args.paths)
        est = EnSiamPretrainer(
            args.backbone,
            input_shape=_parse_shape(args.input_shape),
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            n_views=args.n_views,
            target=args.target,
            policy=args.policy,
            base_lr=args.base_lr,
            sync_batchnorm=not args.no_sync_batchnorm,
            checkpoint_dir=args.checkpoint_dir,
            num_workers=args.num_workers,
            device=args.device,
            random_state=args.seed,
            verbose=args.verbose,
        )
        est.fit(files)
    except Exception as exc:  # one line per process, as the repens command does
        print(
            f"repens_sklearn.pretrain (rank {0 if dp is None else dp.rank}): error: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
            file=sys.stderr,
        )
        return 2
    if main_rank:
        joblib.dump(est, args.output)
        processes = 1 if dp is None else dp.world_size
        print(
            f"pretrained {est.n_epochs_} epochs on {len(files)} images with {processes} "
            f"process(es); final loss {est.history_[-1, 'train_loss']:.4f}; "
            f"wrote {args.output}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
