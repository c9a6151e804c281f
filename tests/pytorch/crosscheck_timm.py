#!/usr/bin/env python3
"""Cross-check of tapegrad's ViT against timm's VisionTransformer (issue 5, docs/interop.md).

Run by hand on the GPU machine (PyTorch, timm, safetensors installed), from the repository root:
  python3 tests/pytorch/crosscheck_timm.py [--exe build/apps/vit_crosscheck] [--cases vit-tiny-4-32,vit-base-16-224]
(--device cpu runs both frameworks on the CPU instead, e.g. where there is no GPU.)

For each case (vit-tiny/4 at 32 px, ViT-B/16 at 224 px):
  forward:  timm builds the model (fixed seed) and saves its state dict with safetensors; tapegrad's
            vit_crosscheck loads it strictly and runs forward + cross entropy + backward on the same
            batch on the GPU; timm does the same. Logits, loss and every parameter gradient must agree
            within --tol relative (||ours - timm|| / ||timm||), fp32 with TF32 off on both sides.
  reverse:  vit_crosscheck --save-init writes tapegrad's initialized weights; timm loads them with
            strict=True and its logits must agree with tapegrad's on the batch.
Prints one line per comparison and PASS or FAIL last; exits 1 on FAIL.
"""
import argparse, os, subprocess, sys, tempfile
import torch, torch.nn as nn, torch.nn.functional as F
import timm
from safetensors.torch import save_file, load_file
from timm.models.vision_transformer import VisionTransformer

CASES = {
    "vit-tiny-4-32": dict(model="vit-tiny", dim=192, depth=12, heads=3, patch=4, img=32, classes=10, batch=8),
    "vit-base-16-224": dict(model="vit-base", dim=768, depth=12, heads=12, patch=16, img=224, classes=1000, batch=2),
}


def disable_tf32():
    # The legacy flags, as in torch_vit_bench.py (mixing them with the new fp32_precision API raises
    # in recent PyTorch); the new API only where the legacy one is gone. check_fp32() verifies.
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    except (AttributeError, RuntimeError):
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).norm() / b.norm()).item()


def check_fp32(report, device):
    # TF32 products are off by ~1e-3 relative; full fp32 by ~1e-6. Checks the flags took effect.
    g = torch.Generator().manual_seed(0)
    a, x, w = torch.randn(512, 512, generator=g), torch.randn(4, 3, 32, 32, generator=g), torch.randn(64, 3, 4, 4, generator=g)
    da, dx, dw = a.to(device), x.to(device), w.to(device)
    report("setup", "fp32 matmul (no TF32)", rel(da @ da, a.double() @ a.double()), 1e-5)
    report("setup", "fp32 conv2d (no TF32)", rel(F.conv2d(dx, dw, stride=4), F.conv2d(x.double(), w.double(), stride=4)), 1e-5)


def build_timm(c, seed, device):
    torch.manual_seed(seed)
    m = VisionTransformer(img_size=c["img"], patch_size=c["patch"], in_chans=3, num_classes=c["classes"],
                          global_pool="token", embed_dim=c["dim"], depth=c["depth"], num_heads=c["heads"],
                          mlp_ratio=4.0, qkv_bias=True, class_token=True, drop_rate=0.0, pos_drop_rate=0.0,
                          proj_drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
    # The explicit attention path (q*scale @ k^T, softmax, @ v) is tapegrad's computation; SDPA's
    # fused kernels would add their own rounding to the comparison.
    for blk in m.blocks:
        blk.attn.fused_attn = False
    return m.to(device).eval()


def structure_problems(m):
    """The assumptions tapegrad's model makes about this timm configuration (docs/interop.md)."""
    b = m.blocks[0]
    checks = {
        "final norm before pooling, no fc_norm":
            isinstance(m.fc_norm, nn.Identity) and not isinstance(m.norm, nn.Identity),
        "class-token pooling": m.global_pool == "token" and m.num_prefix_tokens == 1 and not m.no_embed_class,
        "no norm_pre, patch_drop, layer scale":
            all(isinstance(x, nn.Identity) for x in (m.norm_pre, m.patch_drop, b.ls1, b.ls2)),
        "LayerNorm eps 1e-6": all(n.eps == 1e-6 for n in (m.norm, b.norm1, b.norm2)),
        "exact GELU": isinstance(b.mlp.act, nn.GELU) and b.mlp.act.approximate == "none",
        "pos_embed covers the class token": tuple(m.pos_embed.shape) == (1, m.patch_embed.num_patches + 1, m.embed_dim),
    }
    return [name for name, ok in checks.items() if not ok]


def run_ours(exe, c, device, args):
    cmd = [exe, "--model", c["model"], "--patch", str(c["patch"]), "--img", str(c["img"]),
           "--classes", str(c["classes"]), "--channels", "3", "--device", device] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.stdout.write(p.stderr)
    return p.returncode == 0


def check_case(name, c, exe, device, work, tol, report):
    weights, batch = os.path.join(work, name + "-timm.safetensors"), os.path.join(work, name + "-batch.safetensors")
    ours_path, init = os.path.join(work, name + "-ours.safetensors"), os.path.join(work, name + "-init.safetensors")
    ours_init_path = os.path.join(work, name + "-ours-init.safetensors")

    m = build_timm(c, 0, device)
    for problem in structure_problems(m):
        report(name, "timm structure: " + problem, float("inf"), tol)
    save_file({k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}, weights)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(c["batch"], 3, c["img"], c["img"], generator=g)
    labels = torch.randint(0, c["classes"], (c["batch"],), generator=g)
    save_file({"images": images, "labels": labels}, batch)

    # Forward: timm's weights in both frameworks, one step on the same batch.
    if not run_ours(exe, c, device, ["--weights", weights, "--batch", batch, "--out", ours_path]):
        report(name, "vit_crosscheck --weights ran", float("inf"), tol)
        return
    ours = load_file(ours_path)
    logits = m(images.to(device))
    loss = F.cross_entropy(logits, labels.to(device))
    loss.backward()
    report(name, "logits", rel(ours["logits"], logits), tol)
    report(name, "loss", rel(ours["loss"], loss), tol)
    params = dict(m.named_parameters())
    for key in sorted(set(params) | {k[5:] for k in ours if k.startswith("grad.")}):
        if key not in params or "grad." + key not in ours:
            report(name, "grad." + key + " present on both sides", float("inf"), tol)
        else:
            report(name, "grad." + key, rel(ours["grad." + key], params[key].grad), tol)

    # Reverse: tapegrad's initialization loads into timm (strict) with the same logits.
    if not run_ours(exe, c, device, ["--seed", "7", "--save-init", init, "--batch", batch, "--out", ours_init_path]):
        report(name, "vit_crosscheck --save-init ran", float("inf"), tol)
        return
    m2 = build_timm(c, 1, device)
    try:
        m2.load_state_dict(load_file(init, device=device), strict=True)
    except RuntimeError as e:
        print(e)
        report(name, "reverse: timm load_state_dict(strict=True)", float("inf"), tol)
        return
    with torch.no_grad():
        theirs = m2(images.to(device))
    report(name, "reverse: logits of tapegrad's init in timm", rel(load_file(ours_init_path)["logits"], theirs), tol)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", default="build/apps/vit_crosscheck", help="tapegrad's vit_crosscheck executable")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance")
    ap.add_argument("--device", default="cuda", help="cuda (the check of record) or cpu")
    ap.add_argument("--workdir", help="where the safetensors files go (default: a temporary folder)")
    a = ap.parse_args()
    if not os.access(a.exe, os.X_OK):
        sys.exit(f"FAIL: {a.exe} is not an executable (build vit_crosscheck, or pass --exe)")
    work = a.workdir or tempfile.mkdtemp(prefix="tg_crosscheck_")
    os.makedirs(work, exist_ok=True)
    where = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__}, timm {timm.__version__}, {where}, exe {a.exe}, files in {work}")
    disable_tf32()
    failures = []

    def report(case, what, err, tol):
        ok = err <= tol
        print(f"{case:<16} {what:<58} rel {err:9.2e}  {'ok' if ok else 'FAIL'}", flush=True)
        if not ok:
            failures.append(f"{case} {what}")

    check_fp32(report, a.device)
    for name in a.cases.split(","):
        check_case(name, CASES[name], a.exe, a.device, work, a.tol, report)
    print(f"FAIL ({len(failures)} comparisons): " + "; ".join(failures[:10]) if failures else "PASS")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
