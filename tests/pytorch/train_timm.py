#!/usr/bin/env python3
"""train_vit's training recipe in PyTorch + timm, for parity runs on the GPU machine (issue 11).

Same flags, same defaults (train_vit's GPU recipe) and the same meaning as apps/train_vit
(docs/train_vit.md), mapped onto timm's VisionTransformer and torch.optim:

  model       timm VisionTransformer (class token, token pooling, qkv bias, LayerNorm eps 1e-6,
              exact GELU, no dropout) with timm's own init (torch.manual_seed(--seed)); or
              --init-from a safetensors file with timm's names (e.g. tapegrad's initial weights);
              --save-init writes the initial weights for `train_vit --init-from`
  attention   --attention fused (timm's default: scaled_dot_product_attention, whose fp32 kernel
              keeps fp32 accuracy under TF32) or explicit (q*scale @ k^T, softmax, @ v: the GEMMs
              tapegrad runs, TF32 under --precision tf32)
  optimizer   adam (L2 decay added to the gradient) | adamw (decoupled) | sgd (momentum 0.9), torch.optim
              with PyTorch's defaults otherwise; no decay on 1-D parameters, cls_token, pos_embed
              (tapegrad's nn::decay_specs and timm's no_weight_decay)
  schedule    per step, tapegrad's nn::cosine_lr: lr = base*(step+1)/warmup for step < warmup,
              then base*(1 + cos(pi*(step - warmup)/(total - warmup)))/2; warmup =
              round(--warmup-epochs * steps per epoch), total = --epochs * steps per epoch
  loss        cross entropy, mean over the batch, label smoothing as PyTorch's
  clipping    torch.nn.utils.clip_grad_norm_ (norm over all gradients, factor max/(norm + 1e-6))
  data        the CIFAR binary files read directly (data_batch_1..5.bin, test_batch.bin; CIFAR-100
              train.bin/test.bin), the whole set on the GPU; training drops the last short batch,
              evaluation keeps it
  order       --data-order tapegrad (default): tapegrad's own permutation (std::mt19937_64
              Fisher-Yates seeded with seed*0x9E3779B97F4A7C15 + epoch) and its crops and flips
              (Philox4x32-10 at key seed, counter (sample, epoch)): the same batches, image for image,
              as train_vit with the same --seed; torch: torch.randperm and torch random crops
  augment     crop-flip: the image zero-padded by 4 pixels in pixel space (black, as torchvision's
              RandomCrop before Normalize), a 32x32 crop at offsets 0..8 inclusive, horizontal flip
              with probability 1/2; then (x/255 - mean)/std with tapegrad's per-channel constants
  precision   fp32: no TF32 anywhere (matmul and cuDNN flags off); tf32: both on (PyTorch's
              allow_tf32: Linear GEMMs and the patch Conv2d in TF32)

Writes --metrics-out as JSON Lines in train_vit's format ("type": "train" every --log-every steps,
"type": "eval" after each epoch, same keys) plus "framework": "pytorch", and ends with train_vit's
summary line ("summary: best test acc X%, final test acc Y% after N steps").

Example:
  python3 tests/pytorch/train_timm.py --dataset cifar10 --data-dir /tmp/cifar10 --model vit-small --patch 4 \\
    --img 32 --batch-size 64 --optimizer adam --lr 3e-4 --weight-decay 0 --warmup-epochs 0 --label-smoothing 0 \\
    --clip-grad 0 --epochs 3 --augment crop-flip --precision tf32 --seed 0 --metrics-out torch-s0.jsonl
"""
import argparse, json, math, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tapegrad_data import tapegrad_choices, tapegrad_permutation  # noqa: E402

PRESETS = {"vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6), "vit-base": (768, 12, 12)}
# Per-channel mean and std of pixel / 255 (apps/train_vit/setup.cpp).
NORMALIZATION = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                 "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


# ----- data: the CIFAR binary files, as data/datasets.cpp reads them -----

def locate(data_dir, sub, first):
    for d in (data_dir, os.path.join(data_dir, sub)):
        if os.path.isfile(os.path.join(d, first)):
            return d
    sys.exit(f"train_timm.py: no {first} in {data_dir} or {os.path.join(data_dir, sub)}")


def read_records(path, label_bytes, label_offset):
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + 3072
    if raw.size % record:
        sys.exit(f"train_timm.py: {path} is {raw.size} bytes, not a whole number of {record}-byte records")
    raw = raw.reshape(-1, record)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, label_offset].astype(np.int64)


def load_split(dataset, data_dir, train):
    if dataset == "cifar10":
        d = locate(data_dir, "cifar-10-batches-bin", "data_batch_1.bin" if train else "test_batch.bin")
        files = [f"data_batch_{b}.bin" for b in range(1, 6)] if train else ["test_batch.bin"]
        parts = [read_records(os.path.join(d, f), 1, 0) for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), 10
    name = "train.bin" if train else "test.bin"
    d = locate(data_dir, "cifar-100-binary", name)
    coarse = dataset == "cifar100-coarse"
    images, labels = read_records(os.path.join(d, name), 2, 0 if coarse else 1)
    return images, labels, 20 if coarse else 100


class Loader:
    """Batches of a dataset held on the GPU as u8: gathered, padded, cropped, flipped, normalized there."""

    def __init__(self, images, labels, mean, std, batch_size, shuffle, crop_flip, seed, order, device):
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.n, self.batch_size, self.shuffle, self.crop_flip = len(labels), batch_size, shuffle, crop_flip
        self.seed, self.order, self.device = seed, order, device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        # As AugmentParams: inv_std = 1.0f / std in f32; pixel * (1.0f / 255.0f).
        self.inv_std = (1.0 / torch.tensor(std, dtype=torch.float32)).to(device).view(1, 3, 1, 1)
        self.scale = torch.tensor(1.0 / 255.0, dtype=torch.float32, device=device)
        self.epoch = None
        self.batches = self.n // batch_size if shuffle else (self.n + batch_size - 1) // batch_size

    def prepare(self, epoch):
        if epoch == self.epoch:
            return
        self.epoch = epoch
        if not self.shuffle:
            self.perm = torch.arange(self.n, device=self.device)
        elif self.order == "tapegrad":
            self.perm = torch.tensor(tapegrad_permutation(self.n, self.seed, epoch), device=self.device)
        else:
            g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
            self.perm = torch.randperm(self.n, generator=g).to(self.device)
        if self.crop_flip:
            if self.order == "tapegrad":
                cy, cx, flip = tapegrad_choices(self.n, self.seed, epoch, 4)
                cy, cx, flip = torch.from_numpy(cy), torch.from_numpy(cx), torch.from_numpy(flip)
            else:
                g = torch.Generator().manual_seed(self.seed * 1000003 + epoch + 7919)
                cy, cx = torch.randint(0, 9, (self.n,), generator=g), torch.randint(0, 9, (self.n,), generator=g)
                flip = torch.rand(self.n, generator=g) < 0.5
            self.cy, self.cx, self.flip = cy.to(self.device), cx.to(self.device), flip.to(self.device)

    def batch(self, epoch, i):
        self.prepare(epoch)
        idx = self.perm[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.images[idx].float()  # [B, 3, 32, 32] pixel values
        if self.crop_flip:
            x = F.pad(x, (4, 4, 4, 4))  # zeros in pixel space, before normalization
            r = torch.arange(32, device=self.device)
            ys = self.cy[idx, None] + r  # [B, 32] rows of the padded image
            xs = self.cx[idx, None] + torch.where(self.flip[idx, None], 31 - r, r)
            b = torch.arange(len(idx), device=self.device)[:, None, None]
            x = x[b, :, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2).contiguous()  # [B, 32, 32, 3] -> [B, 3, 32, 32]
        return (x * self.scale - self.mean) * self.inv_std, self.labels[idx]


# ----- the recipe -----

def cosine_lr(step, total, warmup, base, min_lr=0.0):
    """nn::cosine_lr."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * progress))


def set_tf32(on):
    # The legacy flags (as tests/pytorch/crosscheck_timm.py); the new API only where they are gone.
    try:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    except (AttributeError, RuntimeError):
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "cifar100-coarse"])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--augment", default="auto", choices=["auto", "none", "crop-flip"])
    ap.add_argument("--train-subset", type=int, default=0)
    ap.add_argument("--test-subset", type=int, default=0)
    ap.add_argument("--model", default="vit-small", choices=sorted(PRESETS))
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--img", type=int, default=32)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--optimizer", default="adamw", choices=["adam", "adamw", "sgd"])
    ap.add_argument("--weight-decay", type=float, default=None, help="default 0.05 with adamw, else 0")
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--clip-grad", type=float, default=1.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--init-from", help="initial weights (safetensors, timm names, loaded strictly)")
    ap.add_argument("--save-init", help="write the initial weights (safetensors) and continue")
    ap.add_argument("--metrics-out")
    ap.add_argument("--attention", default="fused", choices=["fused", "explicit"])
    ap.add_argument("--data-order", default="tapegrad", choices=["tapegrad", "torch"])
    a = ap.parse_args()
    if a.weight_decay is None:
        a.weight_decay = 0.05 if a.optimizer == "adamw" else 0.0
    if a.img != 32:
        ap.error("--img must be 32 (CIFAR's size; train_vit's bilinear resize is not reproduced here)")
    if a.img % a.patch:
        ap.error(f"--patch {a.patch} does not divide --img {a.img}")
    return a


def build_model(a, classes, device):
    from timm.models.vision_transformer import VisionTransformer
    dim, depth, heads = PRESETS[a.model]
    torch.manual_seed(a.seed)
    m = VisionTransformer(img_size=a.img, patch_size=a.patch, in_chans=3, num_classes=classes, global_pool="token",
                          embed_dim=dim, depth=a.depth or depth, num_heads=heads, mlp_ratio=4.0, qkv_bias=True,
                          class_token=True, drop_rate=0.0, pos_drop_rate=0.0, proj_drop_rate=0.0,
                          attn_drop_rate=0.0, drop_path_rate=0.0)
    if a.attention == "explicit":
        for blk in m.blocks:
            blk.attn.fused_attn = False
    if a.init_from:
        from safetensors.torch import load_file
        m.load_state_dict(load_file(a.init_from), strict=True)
    if a.save_init:
        from safetensors.torch import save_file
        save_file({k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}, a.save_init,
                  metadata={"format": "pt"})
    return m.to(device)


def make_optimizer(a, model):
    no_decay = set(model.no_weight_decay())  # {"pos_embed", "cls_token", "dist_token"}
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and name not in no_decay else rest).append(p)
    groups = [{"params": decay, "weight_decay": a.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if a.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=a.lr, momentum=0.9)
    cls = torch.optim.AdamW if a.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)


def memory_fields():
    if not torch.cuda.is_available():
        return {"allocated_bytes": 0, "peak_allocated_bytes": 0, "reserved_bytes": 0}
    return {"allocated_bytes": torch.cuda.memory_allocated(), "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "reserved_bytes": torch.cuda.memory_reserved()}


def main():
    a = parse_args()
    device = torch.device(a.device)
    set_tf32(a.precision == "tf32")
    train_x, train_y, classes = load_split(a.dataset, a.data_dir, True)
    test_x, test_y, _ = load_split(a.dataset, a.data_dir, False)
    if a.train_subset:
        train_x, train_y = train_x[:a.train_subset], train_y[:a.train_subset]
    if a.test_subset:
        test_x, test_y = test_x[:a.test_subset], test_y[:a.test_subset]
    mean, std = NORMALIZATION["cifar10" if a.dataset == "cifar10" else "cifar100"]
    crop_flip = a.augment in ("crop-flip", "auto")
    train = Loader(train_x, train_y, mean, std, a.batch_size, True, crop_flip, a.seed, a.data_order, device)
    test = Loader(test_x, test_y, mean, std, a.batch_size, False, False, a.seed, a.data_order, device)
    steps_per_epoch = train.batches
    total = a.epochs * steps_per_epoch
    warmup = int(math.floor(a.warmup_epochs * steps_per_epoch + 0.5))  # llround
    last_step = min(a.max_steps, total) if a.max_steps else total

    model = build_model(a, classes, device)
    opt = make_optimizer(a, model)
    params = [p for p in model.parameters()]
    print("train_timm: " + " ".join(f"{k}={v}" for k, v in sorted(vars(a).items())), flush=True)
    print(f"data: {a.dataset}, {train.n} training and {test.n} test images; {steps_per_epoch} steps per epoch; "
          f"model: {sum(p.numel() for p in params)} parameters; torch {torch.__version__}", flush=True)
    metrics = open(a.metrics_out, "w") if a.metrics_out else None

    def write(record):
        if metrics:
            metrics.write(json.dumps(dict(record, framework="pytorch")) + "\n")
            metrics.flush()

    state = {"best": -1.0, "final": -1.0, "lr": a.lr}
    start = time.time()

    def evaluate(epoch_label, step):
        t0 = time.time()
        model.eval()
        correct, loss_sum = torch.zeros((), device=device, dtype=torch.int64), torch.zeros((), device=device)
        with torch.no_grad():
            for i in range(test.batches):
                x, y = test.batch(0, i)
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
        model.train()
        acc, loss = 100.0 * correct.item() / test.n, loss_sum.item() / test.n
        seconds = time.time() - t0
        state["final"], state["best"] = acc, max(state["best"], acc)
        print(f"epoch {epoch_label}/{a.epochs}  step {step}/{last_step}  test acc {acc:.2f}%  test loss {loss:.4f}  "
              f"(best {state['best']:.2f}%, {seconds:.0f}s)", flush=True)
        write(dict(memory_fields(), type="eval", epoch=epoch_label, step=step, loss=loss, test_acc=acc, lr=state["lr"],
                   img_per_s=test.n / max(seconds, 1e-9), elapsed_s=time.time() - start))
        return seconds

    step, running, running_steps, interval = 0, None, 0, time.time()
    last_eval, stopped = -1, False
    model.train()
    for epoch in range(a.epochs):
        for i in range(steps_per_epoch):
            if step >= last_step:
                stopped = True
                break
            x, y = train.batch(epoch, i)
            lr = state["lr"] = cosine_lr(step, total, warmup, a.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(model(x), y, label_smoothing=a.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, a.clip_grad)
            opt.step()
            running = loss.detach() if running is None else running + loss.detach()
            running_steps += 1
            step += 1
            if step % a.log_every == 0 or step == last_step:
                mean_loss = running.item() / running_steps
                seconds = max(time.time() - interval, 1e-9)
                if not math.isfinite(mean_loss):
                    sys.exit(f"training diverged: the mean loss of steps {step - running_steps + 1}-{step} is {mean_loss}")
                print(f"epoch {epoch + 1}/{a.epochs}  step {step}/{last_step}  loss {mean_loss:.4f}  lr {lr:.3e}  "
                      f"{running_steps * a.batch_size / seconds:.0f} img/s", flush=True)
                write(dict(memory_fields(), type="train", epoch=epoch + 1, step=step, loss=mean_loss, lr=lr,
                           img_per_s=running_steps * a.batch_size / seconds, elapsed_s=time.time() - start))
                running, running_steps, interval = None, 0, time.time()
            if a.eval_every and step % a.eval_every == 0 and i + 1 < steps_per_epoch:
                interval += evaluate(epoch + 1, step)
                last_eval = step
        if stopped:
            break
        interval += evaluate(epoch + 1, step)
        last_eval = step
    if last_eval != step:
        evaluate(min(epoch + 1, a.epochs), step)
    print(f"\nsummary: best test acc {state['best']:.2f}%, final test acc {state['final']:.2f}% after {step} steps\n"
          f"         peak allocated {memory_fields()['peak_allocated_bytes']} B, time {time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
