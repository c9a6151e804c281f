#!/usr/bin/env python3
"""Where PyTorch's ViT training step spends its GPU time: timm's VisionTransformer built as
shared/bench/torch_vit_bench.py builds it (Adam, synthetic data, autocast for bf16), a few
warm-up steps, then torch.profiler (CUPTI) over --steps steps. Prints the GPU kernels by total
time per step, the counterpart of `ncu` + scripts/ncu_kernel_times.py on bench_vit.

Usage: python3 scripts/torch_profile_step.py --preset vit-base --patch 16 --img 224 --batch 64 --precision bf16 [--compile]
"""
import argparse
import torch
import torch.nn as nn

PRESETS = {"vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6), "vit-base": (768, 12, 12)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="vit-base")
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="bf16")
    ap.add_argument("--attention", choices=["fused", "explicit"], default="fused")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    from timm.models.vision_transformer import VisionTransformer
    dim, depth, heads = PRESETS[a.preset]
    torch.backends.cuda.matmul.allow_tf32 = a.precision != "fp32"
    torch.backends.cudnn.allow_tf32 = a.precision != "fp32"
    torch.manual_seed(0)
    model = VisionTransformer(img_size=a.img, patch_size=a.patch, embed_dim=dim, depth=depth, num_heads=heads,
                              num_classes=a.classes).cuda()
    if a.attention == "explicit":
        for block in model.blocks:
            block.attn.fused_attn = False
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    forward = torch.compile(model) if a.compile else model
    x = torch.randn(a.batch, 3, a.img, a.img, device="cuda")
    y = torch.randint(0, a.classes, (a.batch,), device="cuda")
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = loss_fn(forward(x).float(), y)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
    kernels = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        total, count = kernels.get(event.name, (0.0, 0))
        kernels[event.name] = (total + event.time_range.elapsed_us(), count + 1)
    grand = sum(t for t, _ in kernels.values())
    print(f"{a.preset}/{a.patch} {a.img}px b{a.batch} {a.precision} {a.attention}{' compiled' if a.compile else ''}: "
          f"{sum(c for _, c in kernels.values()) / a.steps:.0f} kernels, {grand / a.steps / 1e3:.2f} ms GPU time per step")
    for name, (total, count) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:a.top]:
        print(f"{total / a.steps:9.1f} us {100 * total / grand:5.1f}% {count / a.steps:6.0f} x {total / count:8.2f} us  {name[:100]}")


if __name__ == "__main__":
    main()
