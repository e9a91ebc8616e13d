"""Torch training loops for the transformer case classifier: masked-LM pretraining, then fine-tuning.

Runs in one process, or under ``torchrun`` (DDP over the gloo backend on CPU): each rank sees its shard of
every epoch (``DistributedSampler``), gradients are averaged, and only rank 0 evaluates, logs and saves.

    torchrun --nproc_per_node 2 -m training case-classify --data DIR --out DIR --config tiny.json
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dist:
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a world of one."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1)
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _wrap(model: Any, d: Dist) -> Any:
    if d.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, find_unused_parameters=True)


def _shard(n: int, epoch: int, seed: int, d: Dist) -> np.ndarray:
    """This rank's indices for one epoch: a seeded permutation padded to split evenly (DistributedSampler)."""
    perm = np.random.default_rng(seed + epoch).permutation(n)
    per = math.ceil(n / d.world)
    perm = np.concatenate([perm, perm[: per * d.world - n]])
    return perm[d.rank :: d.world]


def _schedule(opt: Any, total: int, warmup: float) -> Any:
    import torch

    w = max(1, int(total * warmup))

    def f(step: int) -> float:
        return (step + 1) / w if step < w else max(0.0, (total - step) / max(1, total - w))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _mask_tokens(ids: Any, tok: Any, prob: float, gen: Any) -> tuple[Any, Any]:
    import torch

    labels = ids.clone()
    special = ids < 5
    pick = (torch.rand(ids.shape, generator=gen) < prob) & ~special
    labels[~pick] = -100
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=gen)
    inputs[pick & (r < 0.8)] = tok.mask
    rand_tok = torch.randint(5, len(tok), ids.shape, generator=gen)
    swap = pick & (r >= 0.8) & (r < 0.9)
    inputs[swap] = rand_tok[swap]
    return inputs, labels


def pretrain_mlm(clf: Any, texts: Sequence[str], seed: int, d: Dist, progress: bool = True) -> list[float]:
    """Masked-LM pretraining of ``clf.model.bert`` on ``texts``; returns the mean loss per epoch."""
    import torch
    from tqdm import tqdm
    from transformers import BertForMaskedLM

    cfg = clf.config
    if cfg.pretrain_epochs <= 0:
        return []
    mlm = BertForMaskedLM(clf.model.config)
    mlm.bert.load_state_dict(clf.model.bert.state_dict(), strict=False)
    net = _wrap(mlm, d)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
    steps = cfg.pretrain_epochs * math.ceil(len(texts) / d.world / cfg.batch_size)
    sched = _schedule(opt, steps, cfg.warmup)
    gen = torch.Generator().manual_seed(seed + 1000 * d.rank)
    losses = []
    for epoch in range(1, cfg.pretrain_epochs + 1):
        net.train()
        idx = _shard(len(texts), epoch, seed + 7, d)
        total, count = 0.0, 0
        bar = tqdm(
            range(0, len(idx), cfg.batch_size),
            desc=f"mlm epoch {epoch}",
            leave=False,
            disable=not (progress and d.main),
        )
        for b in bar:
            batch = [texts[i] for i in idx[b : b + cfg.batch_size]]
            ids, mask = clf.tokenizer.batch(batch, cfg.max_len)
            inputs, labels = _mask_tokens(ids, clf.tokenizer, cfg.mask_prob, gen)
            loss = net(input_ids=inputs, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
            count += len(batch)
            bar.set_postfix(loss=f"{total / count:.3f}")
        losses.append(total / max(count, 1))
        if d.main:
            logger.info("mlm epoch %d: loss %.4f", epoch, losses[-1])
    clf.model.bert.load_state_dict(mlm.bert.state_dict(), strict=False)
    return losses


def finetune(
    clf: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    validate: Callable[[Any], float],
    seed: int,
    d: Dist,
    on_epoch: Callable[[int, float, float], None] | None = None,
    progress: bool = True,
) -> int:
    """Fine-tune for up to ``epochs``; rank 0 scores validation after each epoch (``validate(clf)``, higher is
    better) and the best epoch's weights are kept (broadcast to every rank). Returns the best epoch."""
    import torch
    from tqdm import tqdm

    cfg = clf.config
    pos = {c: i for i, c in enumerate(clf.labels)}
    y = torch.tensor([pos[v] for v in labels], dtype=torch.long)
    net = _wrap(clf.model, d)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(texts) / d.world / cfg.batch_size)
    sched = _schedule(opt, steps, cfg.warmup)
    best, best_epoch, best_state, stale = -1.0, 0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        net.train()
        idx = _shard(len(texts), epoch, seed, d)
        total, count = 0.0, 0
        bar = tqdm(
            range(0, len(idx), cfg.batch_size),
            desc=f"fine-tune epoch {epoch}",
            leave=False,
            disable=not (progress and d.main),
        )
        for b in bar:
            sel = idx[b : b + cfg.batch_size]
            ids, mask = clf.tokenizer.batch([texts[i] for i in sel], cfg.max_len)
            out = net(input_ids=ids, attention_mask=mask, labels=y[sel])
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += out.loss.item() * len(sel)
            count += len(sel)
            bar.set_postfix(loss=f"{total / count:.3f}")
        metric = torch.tensor([validate(clf) if d.main else 0.0])
        if d.world > 1:
            import torch.distributed as dist

            dist.broadcast(metric, src=0)
        m = float(metric)
        if d.main:
            logger.info(
                "fine-tune epoch %d: loss %.4f, validation %.4f (%.0f s)",
                epoch,
                total / max(count, 1),
                m,
                time.time() - t0,
            )
            if on_epoch:
                on_epoch(epoch, total / max(count, 1), m)
        if m > best:
            best, best_epoch, stale = m, epoch, 0
            best_state = {k: v.detach().clone() for k, v in clf.model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        clf.model.load_state_dict(best_state)
    clf.best_epoch = best_epoch
    return best_epoch
