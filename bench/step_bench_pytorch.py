#!/usr/bin/python3
"""Eager PyTorch twin of bench/step_bench.cpp, for the "at least as fast as eager PyTorch" check.

The same CMAformer (METHOD.md section 1, the layout of model/*.cpp), the same step (forward,
cross-entropy, backward, AdamW), the same threads, timed the same way, on Debian's python3-torch,
which is the same LibTorch 1.13 build the C++ side links (apt-get install python3-torch).

  /usr/bin/python3 bench/step_bench_pytorch.py --preset paper --batch 2 --threads 2 [--bf16]
  /usr/bin/python3 bench/step_bench_pytorch.py --preset quarter --batch 4 --threads 1 --ddp 2   # DDP, gloo
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "paper": dict(widths=[16, 32, 64, 128, 256, 512], heads=8, layers=3, ffn=4, size=512),
    "half": dict(widths=[8, 16, 32, 64, 128, 256], heads=8, layers=3, ffn=4, size=256),
    "quarter": dict(widths=[4, 8, 16, 32, 64, 128], heads=8, layers=3, ffn=4, size=224),
}


def conv3(i, o, stride=1, dilation=1):
    return nn.Conv2d(i, o, 3, stride=stride, padding=dilation, dilation=dilation)


class Residual(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(i), conv3(i, o, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(o), conv3(o, o)
        self.skip_conv, self.skip_bn = conv3(i, o, stride), nn.BatchNorm2d(o)

    def forward(self, x):
        main = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return main + self.skip_bn(self.skip_conv(x))


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = max(1, c // 16)
        self.squeeze, self.excite = nn.Linear(c, h, bias=False), nn.Linear(h, c, bias=False)

    def forward(self, x):
        w = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3))))))
        return x * w[:, :, None, None]


class ASPP(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.convs = nn.ModuleList([conv3(i, o, 1, d) for d in (6, 12, 18)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(o) for _ in range(3)])
        self.project = nn.Conv2d(3 * o, o, 1)

    def forward(self, x):
        return self.project(torch.cat([bn(F.relu(c(x))) for c, bn in zip(self.convs, self.bns)], 1))


class PatchEmbed(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.project = conv3(i, o, 2)
        self.depthwise = nn.Conv2d(o, o, 3, padding=1, groups=o)
        self.norm = nn.LayerNorm(o, eps=1e-6)

    def forward(self, x):
        m = self.project(x)
        m = m * torch.sigmoid(self.depthwise(m))
        return self.norm(m.permute(0, 2, 3, 1).float()).permute(0, 3, 1, 2)


class Gate(nn.Module):
    def __init__(self, e, d, o):
        super().__init__()
        self.ebn, self.econv = nn.BatchNorm2d(e), conv3(e, o)
        self.dbn, self.dconv = nn.BatchNorm2d(d), conv3(d, o)
        self.abn, self.aconv = nn.BatchNorm2d(o), nn.Conv2d(o, 1, 1)

    def forward(self, enc, dec):
        g = self.econv(F.relu(self.ebn(enc))) + self.dconv(F.relu(self.dbn(dec)))
        return self.aconv(F.relu(self.abn(g))) * dec


class Layer(nn.Module):
    def __init__(self, e, heads, ffn):
        super().__init__()
        self.attention = nn.MultiheadAttention(e, heads)
        self.norm1, self.norm2 = nn.LayerNorm(e), nn.LayerNorm(e)
        self.ffn_in, self.ffn_out = nn.Linear(e, ffn * e), nn.Linear(ffn * e, e)

    def ffn(self, x):
        return self.ffn_out(F.gelu(self.ffn_in(x)))


class Encoder(Layer):
    def forward(self, x):
        q = self.norm1(x.float())
        z = self.attention(q, x, x, need_weights=False)[0] + q
        w = self.norm2(z.float())
        return self.ffn(w) + w


class Decoder(Layer):
    def forward(self, x, e):
        q = self.norm1((self.attention(x, e, e, need_weights=False)[0] + x).float())
        return self.norm2((self.ffn(q) + q).float())


class CMAformer(nn.Module):
    def __init__(self, widths, heads, layers, ffn, classes=9):
        super().__init__()
        f = widths
        self.stem_conv1, self.stem_bn, self.stem_conv2 = conv3(1, f[0]), nn.BatchNorm2d(f[0]), conv3(f[0], f[0])
        self.stem_skip = conv3(1, f[0])
        self.embed1, self.channel1, self.down1 = PatchEmbed(f[0], f[1]), SE(f[1]), Residual(f[1], f[2], 2)
        self.embed2, self.channel2, self.down2 = PatchEmbed(f[2], f[3]), SE(f[3]), Residual(f[3], f[4], 2)
        self.embed3, self.channel3, self.bottleneck = PatchEmbed(f[4], f[5]), SE(f[5]), Residual(f[5], f[5], 1)
        self.encoder = nn.ModuleList([Encoder(f[5], heads, ffn) for _ in range(layers)])
        self.bridge = ASPP(f[5], f[5])
        self.decoder = nn.ModuleList([Decoder(f[5], heads, ffn) for _ in range(layers)])
        self.gate1, self.up1 = Gate(f[5], f[5], f[5]), Residual(f[5] + f[4], f[4], 1)
        self.gate2, self.up2 = Gate(f[4], f[4], f[4]), Residual(f[4] + f[2], f[3], 1)
        self.gate3, self.up3 = Gate(f[2], f[3], f[3]), Residual(f[3] + f[0], f[1], 1)
        self.head_aspp, self.head = ASPP(f[1], f[0]), nn.Conv2d(f[0], classes, 1)

    def forward(self, x):
        x1 = self.stem_conv2(F.relu(self.stem_bn(self.stem_conv1(x)))) + self.stem_skip(x)
        x2 = self.down1(self.channel1(self.embed1(x1)))
        x3 = self.down2(self.channel2(self.embed2(x2)))
        x4 = self.bottleneck(self.channel3(self.embed3(x3)))
        b, c, h, w = x4.shape
        e = x4.flatten(2).permute(2, 0, 1)
        for layer in self.encoder:
            e = layer(e)
        t = self.bridge(e.permute(1, 2, 0).reshape(b, c, h, w)).flatten(2).permute(2, 0, 1)
        for layer in self.decoder:
            t = layer(t, e)
        x5 = t.permute(1, 2, 0).reshape(b, c, h, w)
        up = lambda t, s: F.interpolate(t, scale_factor=s, mode="bilinear", align_corners=False)
        x6 = self.up1(torch.cat([up(self.gate1(x4, x5), 2), x3], 1))
        x7 = self.up2(torch.cat([up(self.gate2(x3, x6), 4), x2], 1))
        x8 = self.up3(torch.cat([up(self.gate3(x2, x7), 4), x1], 1))
        return self.head(self.head_aspp(x8))


def run(rank, a):
    """One process: the timed steps; with --ddp, rank `rank` of a gloo DDP group."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = PRESETS[a.preset]
    model = CMAformer(cfg["widths"], cfg["heads"], cfg["layers"], cfg["ffn"]).train()
    params = sum(t.numel() for t in model.parameters())
    layout = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)  # NHWC conv weights, as the C++ --channels-last
    if a.ddp:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=a.ddp)
        model = DistributedDataParallel(model)  # default buckets (25 MiB), broadcast from rank 0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    s = cfg["size"]
    x = torch.randn(a.batch, 1, s, s).contiguous(memory_format=layout)
    y = torch.randint(0, 9, (a.batch, s, s))
    times, wrong = [], 0
    for step in range(a.warmup + a.steps):
        start = time.perf_counter()
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        wrong += 0 if torch.isfinite(loss) else 1
        if step >= a.warmup:
            times.append(elapsed)
    med = statistics.median(times)
    mode = f"DDP gloo rank {rank}/{a.ddp}" if a.ddp else "eager"
    print(f"pytorch {mode} {torch.__version__} preset {a.preset} {s}x{s} batch {a.batch} threads {a.threads} "
          f"{'bf16' if a.bf16 else 'fp32'}{' channels-last' if a.channels_last else ''}: {params} parameters, median step {med:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}), {a.batch / med:.2f} images/s  #wrong {wrong}", flush=True)
    if a.ddp:
        torch.distributed.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="paper", choices=PRESETS)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and input")
    p.add_argument("--ddp", type=int, default=0, help="N processes in a gloo DDP group (0: one plain process)")
    p.add_argument("--port", type=int, default=29517)
    a = p.parse_args()
    if a.ddp:
        import torch.multiprocessing as mp
        mp.spawn(run, args=(a,), nprocs=a.ddp, join=True)
    else:
        run(0, a)


if __name__ == "__main__":
    main()
