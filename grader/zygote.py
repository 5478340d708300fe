"""The zygote's side of a forked sandbox start (the host's side is grader/forkserver.py).

A sandbox start is mostly `import torch` and torch._dynamo: about 5 s of CPU on a 2-core box,
once per timed run. A zygote pays it once per SandboxConfig: it is the runner (grader/runner.py
with --zygote) stopped just before its `hello`, with torch, the lazy imports and the exercise's
libraries loaded, and it has never seen learner code, a notebook or data. For each sandbox the
host first starts an ordinary bwrap with every isolation flag of a fresh sandbox but a holder
(`sleep`) as its program, then asks the zygote for a runner inside it:

    host                                    zygote (trusted code only; blocks in recvmsg)
    ----                                    ------
    bwrap ... -- sh -c 'exec sleep'         .
    fork {uid} + fds: the holder's seven    fork() -> shim
      namespaces, cmd/event/log pipes,        shim: uid -> the sandbox uid, enter the holder's user,
      an exit-status pipe                           mount, net, ipc, uts, cgroup, pid namespaces;
                                                    no capabilities, no_new_privs, rlimits,
                                                    new session, only the run's fds; fork() -> runner
    {pid: shim}                                 runner: PID n of the sandbox's PID namespace;
                                                        says `hello` and goes on as grader/runner.py
                                              shim: waits for it, writes its exit status, exits

So the runner ends up exactly where a fresh runner would be (the holder's root, mounts, PID
namespace, network, uid and limits), but its memory is a copy-on-write copy of the zygote's:
torch already imported. Killing the holder's bwrap ends the PID namespace and so the runner
and everything it started, as for a fresh sandbox. One fork serves one run; the zygote never
runs learner code and is never handed to anyone.

CPU only: CUDA cannot be used in a child forked after its initialisation, so a GPU sandbox
starts fresh (and a GPU box has idle cores to hide that start on).
"""

import ctypes
import fcntl
import json
import os
import signal
import socket
import sys

# ---- Linux constants (linux/sched.h, linux/prctl.h, linux/nsfs.h, linux/capability.h) ----------
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
NAMESPACES = (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS), ("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC),
              ("uts", CLONE_NEWUTS), ("cgroup", CLONE_NEWCGROUP), ("pid", CLONE_NEWPID))
NS_GET_USERNS, NS_GET_PARENT = 0xB701, 0xB702
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
CAPABILITY_VERSION_3 = 0x20080522

MAX_REQUEST_BYTES = 64 << 10
FDS_PER_REQUEST = len(NAMESPACES) + 4     # the namespaces, then cmd, event, log and status pipes

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result: int, what: str) -> int:
    if result == -1:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           f"prctl({option})")


def _inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def _user_namespace_chain(target_user_fd: int) -> list[int]:
    """fds of the user namespaces from just below ours down to the target, outermost first."""
    own = os.stat("/proc/self/ns/user").st_ino
    chain, fd = [target_user_fd], target_user_fd
    while True:
        parent = fcntl.ioctl(fd, NS_GET_PARENT)
        if _inode(parent) == own:
            os.close(parent)
            return list(reversed(chain))
        chain.append(parent)
        fd = parent
        if len(chain) > 32:
            raise OSError("the sandbox's user namespace is not below the zygote's")


def enter_namespaces(namespace_fds: dict[str, int]) -> None:
    """Join the holder's namespaces. Each namespace is joined while this process is in the user
    namespace that owns it (joining a mount namespace needs capabilities there), stepping down
    the user namespaces outermost first: bwrap nests one more for --disable-userns."""
    owners = {}
    for name, _flag in NAMESPACES[1:]:
        owner = fcntl.ioctl(namespace_fds[name], NS_GET_USERNS)
        owners[name] = _inode(owner)
        os.close(owner)
    pending = [name for name, _flag in NAMESPACES[1:]]
    flags = dict(NAMESPACES)
    for user_fd in _user_namespace_chain(namespace_fds["user"]):
        _check(_libc.setns(user_fd, CLONE_NEWUSER), "setns(user)")
        here = _inode(user_fd)
        for name in [n for n in pending if owners[n] == here]:
            _check(_libc.setns(namespace_fds[name], flags[name]), f"setns({name})")
            pending.remove(name)
    if pending:
        raise OSError(f"no user namespace of the sandbox owns its {', '.join(pending)} namespace")


def drop_privileges() -> None:
    """No capabilities left anywhere (effective, permitted, inheritable, ambient, bounding) and
    no way to gain any on exec: what bwrap leaves its sandboxed program with."""
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last_cap + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header, data = _CapHeader(CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _become(uid: int | None) -> None:
    """As root, the sandbox's own uid (= gid), no groups, before joining anything."""
    if uid is None:
        return
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _prctl(PR_SET_DUMPABLE, 1)  # as a freshly exec'd process: its /proc files are its own


def _set_limits(limits: list) -> None:
    import resource
    for name, value in limits:
        resource.setrlimit(getattr(resource, name), (value, value))


def _keep_only(fds: dict[int, int]) -> None:
    """Make each target fd a copy of its source (target: source), close everything else. The
    sources are first moved above every target, so no dup2 overwrites a source still to be used."""
    high = {target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, 256) for target, source in fds.items()}
    for target, source in high.items():
        os.dup2(source, target, inheritable=True)
    keep = sorted(fds)
    low = 0
    for fd in keep + [1 << 20]:
        if low < fd:  # never an empty range: os.closerange(0, 0) would close every fd
            os.closerange(low, fd)
        low = fd + 1


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal n: 128 + n, as bwrap reports it


def _shim(request: dict, fds: list[int], runner_fds: dict[str, int], sandbox: dict) -> None:
    """In the forked child: become the sandbox's process, fork the runner, report its exit."""
    namespace_fds = {name: fds[i] for i, (name, _flag) in enumerate(NAMESPACES)}
    cmd_read, event_write, log_write, status_write = fds[len(NAMESPACES):]
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # No parent-death signal for the shim: a run outlives a zygote that dies beside it. The shim
    # lives as long as the runner, which dies with the holder's PID namespace.
    _become(request.get("uid"))
    enter_namespaces(namespace_fds)
    os.chdir(sandbox["cwd"])
    drop_privileges()
    os.setsid()
    _set_limits(sandbox["rlimits"])
    devnull = os.open("/dev/null", os.O_RDONLY)
    _keep_only({0: devnull, 1: log_write, 2: log_write, runner_fds["cmd"]: cmd_read,
                runner_fds["event"]: event_write, runner_fds["status"]: status_write})
    runner = os.fork()  # the first process inside the sandbox's PID namespace
    if runner == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.close(runner_fds["status"])
        return
    for fd in (0, 1, 2, runner_fds["cmd"], runner_fds["event"]):
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(runner, 0)
            break
        except InterruptedError:
            continue
    os.write(runner_fds["status"], f"{_exit_code(status)}\n".encode())
    os._exit(0)


def _report_and_exit(message: str, fds: list[int], runner_fds: dict[str, int]) -> None:
    """A shim that failed: the reason into the sandbox's log, 70 as its status, wherever those
    pipes sit by now (renumbered once _keep_only has run)."""
    for log, status in ((fds[len(NAMESPACES) + 2], fds[len(NAMESPACES) + 3]), (2, runner_fds["status"])):
        try:
            os.write(log, f"{message}\n".encode())
            os.write(status, b"70\n")
            break
        except OSError:
            continue
    os._exit(70)


def serve(control_fd: int, runner_fds: dict[str, int], sandbox: dict) -> None:
    """The zygote's loop: say ready, then fork one runner per request. Returns only in a runner,
    inside its sandbox; the zygote itself exits when the host closes the control socket.

    runner_fds: the fd numbers the runner's argv names ("cmd", "event"), and where the shim keeps
    the status pipe ("status"). sandbox: what the process inside sets for itself: "cwd", "env",
    "sys_path" (the sandbox's paths of the grader package), "rlimits" ([(RLIMIT_NAME, value)])."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the grader died: so does the zygote
    control = socket.socket(fileno=control_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shims report to the host; the kernel reaps them
    control.send(json.dumps({"ready": True}).encode())
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, MAX_REQUEST_BYTES, FDS_PER_REQUEST)
        except InterruptedError:
            continue
        if not message:
            os._exit(0)  # the host closed its end: the pool is closing
        if len(fds) != FDS_PER_REQUEST:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"error": f"expected {FDS_PER_REQUEST} fds, got {len(fds)}"}).encode())
            continue
        request = json.loads(message)
        shim = os.fork()
        if shim == 0:
            try:
                control.close()
                _shim(request, fds, runner_fds, sandbox)
            except BaseException as e:  # noqa: BLE001  nothing of the zygote may run on in here
                _report_and_exit(f"the sandbox's runner could not be forked: {e}", fds, runner_fds)
            # The runner: the sandbox's process from here on.
            os.environ.clear()
            os.environ.update(sandbox["env"])
            sys.path[:] = sandbox["sys_path"] + [p for p in sys.path if p not in sandbox["host_sys_path"]]
            return
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"pid": shim}).encode())


def pack_request(uid: int | None) -> bytes:
    return json.dumps({"uid": uid}).encode()

