"""Why the warm pool's default is "serial" on a CPU machine: what a sandbox start running beside a
timed run costs that run, at each priority the pool could give the start.

    .venv/bin/python bench/idle_contention.py              # 3 interleaved repeats
    .venv/bin/python bench/idle_contention.py --repeats 5

The timed run is a torch training (a 3-layer MLP, full-batch AdamW, 300 steps on digits-sized
tensors, torch's default intra-op threads), in its own process, as a sandboxed run would be.
Beside it, in the background, a loop of what a waiting sandbox's start does
(`import torch, torch._dynamo`), run as:

    alone    nothing beside it
    idle     under SCHED_IDLE (`chrt --idle 0`): GRADER_POOL_OVERLAP=idle
    nice19   SCHED_OTHER at nice 19
    normal   SCHED_OTHER at nice 0

It prints the median training seconds of each. The background loop is harsher than one start (it
never stops), so this is an upper bound on what a single overlapping start costs.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

TRAIN = r'''
import time, torch
torch.manual_seed(0)
x, y = torch.randn(1797, 64), torch.randint(0, 10, (1797,))
model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 10))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

for _ in range(20):  # off the clock: first-call costs
    step()
started = time.perf_counter()
for _ in range(300):
    step()
print(time.perf_counter() - started)
'''
BESIDE = {"alone": None, "idle": ["chrt", "--idle", "0"], "nice19": ["nice", "-n", "19"], "normal": []}
SETTLE_SECONDS = 0.5  # the background loop is running before the timed process starts


def train_seconds() -> float:
    out = subprocess.run([sys.executable, "-c", TRAIN], capture_output=True, text=True, check=True).stdout
    return float(out)


def start_background(prefix: list[str]) -> subprocess.Popen:
    loop = f"while true; do {sys.executable} -c 'import torch, torch._dynamo'; done"
    return subprocess.Popen(prefix + ["bash", "-c", loop], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    measured = {name: [] for name in BESIDE}
    for _ in range(args.repeats):
        for name, prefix in BESIDE.items():  # interleaved, so a noisy machine hits them alike
            background = start_background(prefix) if prefix is not None else None
            time.sleep(SETTLE_SECONDS if background else 0)
            try:
                measured[name].append(train_seconds())
            finally:
                if background is not None:
                    os.killpg(background.pid, signal.SIGKILL)
                    background.wait()
    alone = statistics.median(measured["alone"])
    print(f"torch training beside a sandbox-start loop, {os.cpu_count()} CPUs, median of {args.repeats}")
    for name, values in measured.items():
        median = statistics.median(values)
        print(f"  {name:<7} {median:7.2f} s  {median / alone:5.2f}x   (each: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
